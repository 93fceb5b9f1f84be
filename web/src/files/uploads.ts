/**
 * Uploads through resumable upload sessions: CreateUploadSession, UploadPart in the session's part size, then
 * CompleteUploadSession. Each unfinished session is remembered in localStorage by the file's name, size and
 * modification time, so after a reload choosing the same file again resumes where the server says it stands
 * (received_bytes) instead of starting over. A part that fails on the network is retried; the server's
 * received_bytes is the truth after any doubt.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { files } from "../api/clients";
import { loadSession } from "../api/session";
import { UploadSessionState, type File as StoredFile } from "../gen/devpynode/files/v1/files_pb";

const KEY = "devpynode.uploads";
const HASH_LIMIT = 512 * 1024 * 1024; // larger files upload without a client-side checksum

export interface PendingUpload {
  sessionId: string;
  userId: string;
  name: string;
  size: number;
  lastModified: number;
}

export interface UploadProgress {
  name: string;
  sent: number;
  total: number;
  /** Bytes the server already had when this upload (re)started: > 0 means resumed. */
  resumedFrom: number;
  phase: "checking" | "uploading" | "done" | "failed";
  error?: string;
  file?: StoredFile;
}

export function pendingUploads(): PendingUpload[] {
  try {
    const userId = loadSession()?.userId;
    return (JSON.parse(localStorage.getItem(KEY) ?? "[]") as PendingUpload[]).filter((p) => p.userId === userId);
  } catch {
    return [];
  }
}

function savePending(all: PendingUpload[]): void {
  localStorage.setItem(KEY, JSON.stringify(all));
}

function forget(sessionId: string): void {
  try {
    const all = JSON.parse(localStorage.getItem(KEY) ?? "[]") as PendingUpload[];
    savePending(all.filter((p) => p.sessionId !== sessionId));
  } catch {
    localStorage.removeItem(KEY);
  }
}

function remember(pending: PendingUpload): void {
  let all: PendingUpload[] = [];
  try {
    all = JSON.parse(localStorage.getItem(KEY) ?? "[]") as PendingUpload[];
  } catch {
    // a damaged list is replaced
  }
  savePending([...all.filter((p) => p.sessionId !== pending.sessionId), pending].slice(-20));
}

async function sha256Hex(file: File): Promise<string> {
  if (!crypto.subtle || file.size > HASH_LIMIT) return "";
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function findSession(file: File, userId: string) {
  const match = pendingUploads().find(
    (p) => p.userId === userId && p.name === file.name && p.size === file.size && p.lastModified === file.lastModified,
  );
  if (!match) return null;
  try {
    const { session } = await files.getUploadSession({ sessionId: match.sessionId });
    if (session && session.state !== UploadSessionState.CANCELLED) return session;
  } catch {
    // expired or unknown: start over
  }
  forget(match.sessionId);
  return null;
}

export async function uploadFile(file: File, report: (progress: UploadProgress) => void, signal?: AbortSignal): Promise<StoredFile> {
  const userId = loadSession()?.userId ?? "";
  const progress: UploadProgress = { name: file.name, sent: 0, total: file.size, resumedFrom: 0, phase: "checking" };
  report({ ...progress });
  let session = await findSession(file, userId);
  if (session?.state === UploadSessionState.COMPLETED) {
    forget(session.id);
    const { file: stored } = await files.getFile({ fileId: session.fileId });
    if (!stored) throw new ConnectError("the completed upload has no file", Code.Internal);
    report({ ...progress, sent: file.size, phase: "done", file: stored });
    return stored;
  }
  if (!session) {
    const created = await files.createUploadSession(
      {
        metadata: {
          filename: file.name,
          contentType: file.type || "application/octet-stream",
          sizeBytes: BigInt(file.size),
          sha256: await sha256Hex(file),
        },
      },
      { signal },
    );
    session = created.session!;
    remember({ sessionId: session.id, userId, name: file.name, size: file.size, lastModified: file.lastModified });
  }
  const partSize = Number(session.partSize) || 1024 * 1024;
  let offset = Number(session.receivedBytes);
  progress.resumedFrom = offset;
  progress.phase = "uploading";
  progress.sent = offset;
  report({ ...progress });
  let failures = 0;
  while (offset < file.size) {
    const data = new Uint8Array(await file.slice(offset, offset + partSize).arrayBuffer());
    try {
      const { session: after } = await files.uploadPart({ sessionId: session.id, offset: BigInt(offset), data }, { signal });
      offset = Number(after?.receivedBytes ?? offset + data.length);
      failures = 0;
    } catch (error) {
      const code = ConnectError.from(error).code;
      if (signal?.aborted || code === Code.Canceled) throw error;
      if (++failures > 5 || (code !== Code.Unavailable && code !== Code.FailedPrecondition && code !== Code.Aborted)) {
        throw error;
      }
      // Where does the server stand? Resume from there.
      await new Promise((resolve) => setTimeout(resolve, 300 * failures));
      const { session: now } = await files.getUploadSession({ sessionId: session.id });
      offset = Number(now?.receivedBytes ?? offset);
    }
    progress.sent = offset;
    report({ ...progress });
  }
  const { file: stored } = await files.completeUploadSession({ sessionId: session.id }, { signal });
  forget(session.id);
  if (!stored) throw new ConnectError("no file in the answer", Code.Internal);
  report({ ...progress, sent: file.size, phase: "done", file: stored });
  return stored;
}

/** Drops a remembered session on the server and here. */
export async function cancelPending(pending: PendingUpload): Promise<void> {
  try {
    await files.cancelUploadSession({ sessionId: pending.sessionId });
  } finally {
    forget(pending.sessionId);
  }
}

/** Hands a blob: URL to the browser as a download named `filename`; `revoke` frees it once the save began. */
export function saveBlob(url: string, filename: string, revoke: boolean): void {
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.click();
  if (revoke) window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Reads a stored file (or its thumbnail) into a blob: URL for display or saving. */
export async function fileBlobUrl(fileId: string, thumbnail: boolean, signal?: AbortSignal): Promise<{ url: string; name: string }> {
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let name = "download";
  let type = "application/octet-stream";
  for await (const part of files.downloadFile({ fileId, variant: thumbnail ? 1 : 0 }, { signal })) {
    if (part.data.case === "file") {
      name = part.data.value.filename;
      type = thumbnail ? "image/webp" : part.data.value.inline ? part.data.value.contentType : "application/octet-stream";
    } else if (part.data.case === "chunk") {
      chunks.push(part.data.value as Uint8Array<ArrayBuffer>);
    }
  }
  return { url: URL.createObjectURL(new Blob(chunks, { type })), name };
}
