/** The user's files: upload (resumable, with progress), thumbnails, download, delete. */
import { useEffect, useState } from "react";
import { formatTime } from "../time";
import { useInfiniteQuery, useMutation, useQueryClient } from "@tanstack/react-query";
import { files } from "../api/clients";
import { describeError } from "../api/errors";
import { keys } from "../api/queries";
import { formatBytes } from "../chat/MessageItem";
import type { File as StoredFile } from "../gen/devpynode/files/v1/files_pb";
import { ProgressBar } from "../files/ProgressBar";
import { cancelPending, fileBlobUrl, pendingUploads, saveBlob, uploadFile, type UploadProgress } from "../files/uploads";

export function FilesPage() {
  const client = useQueryClient();
  const list = useInfiniteQuery({
    queryKey: keys.files,
    queryFn: ({ pageParam }) => files.listFiles({ pageSize: 50, pageToken: pageParam }),
    initialPageParam: "",
    getNextPageParam: (page) => page.nextPageToken || undefined,
  });
  const shown = list.data?.pages.flatMap((page) => page.files) ?? [];
  const [progress, setProgress] = useState<UploadProgress | null>(null);
  const [pending, setPending] = useState(pendingUploads);
  const [error, setError] = useState("");
  const invalidate = () => client.invalidateQueries({ queryKey: keys.files });

  const upload = async (file: File | undefined) => {
    if (!file) return;
    setError("");
    try {
      let last: UploadProgress | null = null;
      await uploadFile(file, (p) => setProgress((last = p)));
      await invalidate();
      // The row in the list says it is stored; the finished bar goes a moment later (unless another began).
      setTimeout(() => setProgress((p) => (p === last ? null : p)), 2000);
    } catch (failure) {
      setError(describeError(failure));
      setProgress((p) => (p ? { ...p, phase: "failed" } : p));
    } finally {
      setPending(pendingUploads());
    }
  };
  const remove = useMutation({
    mutationFn: (file: StoredFile) => files.deleteFile({ fileId: file.id }),
    onSuccess: invalidate,
  });
  const failure = error || (list.error ? describeError(list.error) : "") || (remove.error ? describeError(remove.error) : "");
  return (
    <section className="files-page">
      <h1>Files</h1>
      <div className="upload">
        <label className="button">
          Upload a file
          <input type="file" className="visually-hidden" data-testid="upload-input" onChange={(e) => void upload(e.target.files?.[0])} />
        </label>
        {progress && <ProgressBar progress={progress} />}
      </div>
      {pending.length > 0 && !(progress && progress.phase === "uploading") && (
        <div className="pending" role="region" aria-label="Unfinished uploads">
          <h2>Unfinished uploads</h2>
          <p>Choose the same file again to resume where it stopped.</p>
          <ul>
            {pending.map((p) => (
              <li key={p.sessionId}>
                {p.name} ({formatBytes(p.size)}){" "}
                <button type="button" className="link" onClick={() => void cancelPending(p).finally(() => setPending(pendingUploads()))}>
                  Discard
                </button>
              </li>
            ))}
          </ul>
        </div>
      )}
      {failure && (
        <p className="error" role="alert">
          {failure}
        </p>
      )}
      <table className="file-table reflow">
        <caption className="visually-hidden">Your files</caption>
        <thead>
          <tr>
            <th scope="col">Preview</th>
            <th scope="col">Name</th>
            <th scope="col">Type</th>
            <th scope="col">Size</th>
            <th scope="col">Uploaded</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody aria-busy={list.isPending}>
          {shown.map((file) => (
            <tr key={file.id} data-file-id={file.id}>
              <td data-label="Preview">{file.hasThumbnail ? <Thumbnail file={file} /> : <span className="muted">—</span>}</td>
              <td data-label="Name">{file.filename}</td>
              <td data-label="Type">{file.contentType}</td>
              <td data-label="Size">{formatBytes(Number(file.sizeBytes))}</td>
              <td data-label="Uploaded">{formatTime(file.createdAt)}</td>
              <td data-label="Actions">
                <button type="button" className="link" onClick={() => void download(file).catch((f) => setError(describeError(f)))}>
                  Download
                </button>{" "}
                <button
                  type="button"
                  className="link danger"
                  disabled={remove.isPending && remove.variables.id === file.id}
                  onClick={() => window.confirm(`Delete ${file.filename}?`) && remove.mutate(file)}
                >
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.isPending && <p className="muted">Loading…</p>}
      {list.isSuccess && shown.length === 0 && <p className="muted">No files yet.</p>}
      {list.hasNextPage && (
        <button type="button" disabled={list.isFetchingNextPage} onClick={() => void list.fetchNextPage()}>
          More
        </button>
      )}
    </section>
  );
}

async function download(file: StoredFile): Promise<void> {
  const { url } = await fileBlobUrl(file.id, false);
  saveBlob(url, file.filename, true);
}

function Thumbnail({ file }: { file: StoredFile }) {
  const [url, setUrl] = useState("");
  useEffect(() => {
    const abort = new AbortController();
    let made = "";
    fileBlobUrl(file.id, true, abort.signal).then(
      (r) => {
        made = r.url;
        setUrl(r.url);
      },
      () => undefined,
    );
    return () => {
      abort.abort();
      if (made) URL.revokeObjectURL(made);
    };
  }, [file.id]);
  return url ? <img className="thumbnail" src={url} alt={`Thumbnail of ${file.filename}`} /> : <span className="muted">…</span>;
}
