/**
 * The API reference: every service, RPC, message, enum and field with its proto comment. It reads the
 * contracts' descriptor set (built by buf with source info, shipped with the app), so it is always the API this
 * build speaks. `/docs/rest` shows the same API as REST paths, with curl commands (RestDocs.tsx).
 */
import { useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link, useLocation } from "react-router";
import { fromBinary, getExtension, hasExtension } from "@bufbuild/protobuf";
import {
  FileDescriptorSetSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
} from "@bufbuild/protobuf/wkt";
import { keys } from "../api/queries";
import descriptorUrl from "../gen/descriptors.binpb?url";
import { Access, access } from "../gen/devpynode/common/v1/options_pb";
import { DocsTabs, RestDocs } from "./RestDocs";

const ACCESS_WORDS: Record<Access, string> = {
  [Access.UNSPECIFIED]: "signed-in users",
  [Access.ANONYMOUS]: "anyone (no token)",
  [Access.USER]: "signed-in users",
  [Access.ADMIN]: "administrators",
  [Access.SERVICE]: "services only (service token)",
};

interface Entry {
  kind: "service" | "message" | "enum";
  name: string;
  comment: string;
  file: FileDescriptorProto;
  path: number[];
}

function commentsOf(file: FileDescriptorProto, path: number[]): string {
  const location = file.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((p, i) => p === path[i]));
  // protoc keeps the space after each `//`: drop it, line by line.
  return (location?.leadingComments ?? "")
    .split("\n")
    .map((line) => line.replace(/^ /, ""))
    .join("\n")
    .trim();
}

function collect(set: FileDescriptorProto[]): Entry[] {
  const entries: Entry[] = [];
  for (const file of set) {
    if (!file.package.startsWith("devpynode.")) continue;
    file.service.forEach((s, i) => entries.push({ kind: "service", name: `${file.package}.${s.name}`, comment: commentsOf(file, [6, i]), file, path: [6, i] }));
    const walk = (messages: DescriptorProto[], prefix: string, path: number[]) => {
      messages.forEach((m, i) => {
        const here = [...path, i];
        entries.push({ kind: "message", name: `${prefix}.${m.name}`, comment: commentsOf(file, here), file, path: here });
        walk(m.nestedType, `${prefix}.${m.name}`, [...here, 3]);
        m.enumType.forEach((e, j) =>
          entries.push({ kind: "enum", name: `${prefix}.${m.name}.${e.name}`, comment: commentsOf(file, [...here, 4, j]), file, path: [...here, 4, j] }),
        );
      });
    };
    walk(file.messageType, file.package, [4]);
    file.enumType.forEach((e, i) => entries.push({ kind: "enum", name: `${file.package}.${e.name}`, comment: commentsOf(file, [5, i]), file, path: [5, i] }));
  }
  // Services first (what a client calls), then the messages and enums they use, each in file order.
  const rank = { service: 0, message: 1, enum: 1 };
  return entries.map((e, i) => [e, i] as const).sort(([a, i], [b, j]) => rank[a.kind] - rank[b.kind] || i - j).map(([e]) => e);
}

/** The message a path ([4, i, 3, j, 3, k, ...]) leads to: a top-level message, then nested ones. */
function messageAt(file: FileDescriptorProto, path: number[]): DescriptorProto {
  let message = file.messageType[path[1]];
  for (let k = 2; k + 1 < path.length && path[k] === 3; k += 2) message = message.nestedType[path[k + 1]];
  return message;
}

function typeName(field: FieldDescriptorProto): string {
  const base = field.typeName ? field.typeName.replace(/^\./, "") : FieldDescriptorProto_Type[field.type].toLowerCase();
  return field.label === FieldDescriptorProto_Label.REPEATED ? `repeated ${base}` : base;
}

function anchor(name: string): string {
  return name.replace(/[^A-Za-z0-9_.]/g, "");
}

async function readDescriptors(): Promise<FileDescriptorProto[]> {
  const answer = await fetch(descriptorUrl);
  if (!answer.ok) throw new Error(`descriptors: HTTP ${answer.status}`);
  return fromBinary(FileDescriptorSetSchema, new Uint8Array(await answer.arrayBuffer())).file;
}

export function ApiDocsPage({ signedIn }: { signedIn: boolean }) {
  const rest = useLocation().pathname.startsWith("/docs/rest");
  return rest ? <RestDocs signedIn={signedIn} /> : <GrpcDocs />;
}

function GrpcDocs() {
  // The descriptors ship with this build: read once per page load.
  const descriptors = useQuery({ queryKey: keys.descriptors, queryFn: readDescriptors, staleTime: Infinity, retry: false });
  const [query, setQuery] = useState("");
  const entries = useMemo(() => collect(descriptors.data ?? []), [descriptors.data]);
  const error = descriptors.error?.message ?? "";
  const shown = entries.filter((e) => !query || e.name.toLowerCase().includes(query.toLowerCase()));
  return (
    <div className="docs-layout">
      <nav className="sidebar" aria-label="API index">
        <label>
          Search
          <input value={query} onChange={(e) => setQuery(e.target.value)} />
        </label>
        <ul>
          {shown.map((e) => (
            <li key={e.name}>
              <a href={`#${anchor(e.name)}`}>
                <small>{e.kind}</small> {e.name.replace(/^devpynode\./, "")}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <section className="docs">
        <h1>API reference</h1>
        <DocsTabs current="grpc" />
        <p>
          Every service speaks gRPC (grpcurl, the CLI, other services) and grpc-web (browsers, through this server's port). Calls carry{" "}
          <code>authorization: Bearer ACCESS_TOKEN</code> except those callable by anyone; errors carry <code>google.rpc</code> details
          (BadRequest field violations, QuotaFailure, RetryInfo, ErrorInfo). The same calls are REST/JSON too: see{" "}
          <Link to="/docs/rest">REST and curl</Link>.
        </p>
        {error && <p className="error" role="alert">{error}</p>}
        {descriptors.isPending && <p className="muted">Loading…</p>}
        {shown.map((entry) => (
          <EntryView key={entry.name} entry={entry} />
        ))}
      </section>
    </div>
  );
}

/**
 * A proto comment's Markdown, the little the contracts use: paragraphs (blank lines), `code` spans and "- "
 * lists. Lines inside a paragraph are wrapped source lines and join with a space.
 */
function DocText({ text }: { text: string }) {
  if (!text) return null;
  const inline = (line: string) =>
    line.split(/(`[^`]+`)/).map((part, i) => (part.startsWith("`") && part.endsWith("`") && part.length > 1 ? <code key={i}>{part.slice(1, -1)}</code> : part));
  return (
    <div className="comment">
      {text.split(/\n\s*\n/).map((paragraph, i) => {
        const lines = paragraph.split("\n");
        if (lines.every((l) => /^\s*[-*] /.test(l)))
          return (
            <ul key={i}>
              {lines.map((l, j) => (
                <li key={j}>{inline(l.replace(/^\s*[-*] /, ""))}</li>
              ))}
            </ul>
          );
        return <p key={i}>{inline(lines.join(" "))}</p>;
      })}
    </div>
  );
}

function EntryView({ entry }: { entry: Entry }) {
  const { file, path } = entry;
  const id = anchor(entry.name);
  if (entry.kind === "service") {
    const service = file.service[path[1]];
    return (
      <article className="api-entry" id={id}>
        <h2>
          <small>service</small> {entry.name}
        </h2>
        <DocText text={entry.comment} />
        <dl>
          {service.method.map((m, j) => (
            <div key={m.name}>
              <dt>
                <code>
                  rpc {m.name}({m.clientStreaming ? "stream " : ""}
                  <a href={`#${anchor(m.inputType.replace(/^\./, ""))}`}>{m.inputType.replace(/^\.devpynode\./, "")}</a>) returns ({m.serverStreaming ? "stream " : ""}
                  <a href={`#${anchor(m.outputType.replace(/^\./, ""))}`}>{m.outputType.replace(/^\.devpynode\./, "")}</a>)
                </code>
              </dt>
              <dd>
                <DocText text={commentsOf(file, [...path, 2, j])} />
                <small>
                  Callable by:{" "}
                  {m.options && hasExtension(m.options, access) ? ACCESS_WORDS[getExtension(m.options, access)] : ACCESS_WORDS[Access.USER]}
                </small>
              </dd>
            </div>
          ))}
        </dl>
      </article>
    );
  }
  if (entry.kind === "enum") {
    const target: EnumDescriptorProto | undefined =
      path.length === 2 ? file.enumType[path[1]] : messageAt(file, path.slice(0, -2)).enumType[path[path.length - 1]];
    return (
      <article className="api-entry" id={id}>
        <h2>
          <small>enum</small> {entry.name}
        </h2>
        <DocText text={entry.comment} />
        <dl>
          {target?.value.map((v, j) => (
            <div key={v.name}>
              <dt>
                <code>
                  {v.name} = {v.number}
                </code>
              </dt>
              <dd>
                <DocText text={commentsOf(file, [...path, 2, j])} />
              </dd>
            </div>
          ))}
        </dl>
      </article>
    );
  }
  const message = messageAt(file, path);
  return (
    <article className="api-entry" id={id}>
      <h2>
        <small>message</small> {entry.name}
      </h2>
      <DocText text={entry.comment} />
      {message.field.length > 0 && (
        <table className="reflow">
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Type</th>
              <th scope="col">Number</th>
              <th scope="col">Description</th>
            </tr>
          </thead>
          <tbody>
            {message.field.map((f, j) => (
              <tr key={f.name}>
                <td data-label="Field">
                  <code>{f.name}</code>
                </td>
                <td data-label="Type">
                  <code>{typeName(f)}</code>
                </td>
                <td data-label="Number">{f.number}</td>
                <td data-label="Description">
                  <DocText text={commentsOf(file, [...path, 2, j])} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </article>
  );
}
