/**
 * The REST/JSON reference: every operation of the OpenAPI description this server serves (/openapi.json),
 * grouped by service, each with a curl command for this server that can be copied and run as it is once
 * DEVPYNODE_TOKEN holds an access token or a personal API key.
 */
import { useMemo, useState } from "react";
import { Link } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { CopyButton } from "../chat/CopyButton";
import { keys } from "../api/queries";
import { curlFor, operationsByService, type OpenApi, type RestOperation } from "./restExamples";

async function readOpenApi(): Promise<OpenApi> {
  const answer = await fetch("/openapi.json");
  if (!answer.ok) throw new Error(`openapi.json: HTTP ${answer.status}`);
  return (await answer.json()) as OpenApi;
}

function anchor(op: RestOperation): string {
  return `rest-${op.service}-${op.operation.operationId}`;
}

export function RestDocs({ signedIn }: { signedIn: boolean }) {
  const api = useQuery({ queryKey: keys.openapi, queryFn: readOpenApi, staleTime: Infinity, retry: false });
  const [query, setQuery] = useState("");
  const groups = useMemo(() => (api.data ? operationsByService(api.data) : new Map<string, RestOperation[]>()), [api.data]);
  const origin = window.location.origin;
  const wanted = query.toLowerCase();
  const matches = (op: RestOperation) =>
    !wanted || `${op.service} ${op.operation.operationId} ${op.method} ${op.path}`.toLowerCase().includes(wanted);
  const shown = [...groups.entries()].map(([service, ops]) => [service, ops.filter(matches)] as const).filter(([, ops]) => ops.length);
  return (
    <div className="docs-layout">
      <nav className="sidebar" aria-label="REST index">
        <label>
          Search
          <input value={query} onChange={(e) => setQuery(e.target.value)} />
        </label>
        <ul>
          {shown.map(([service, ops]) => (
            <li key={service}>
              <a href={`#rest-${service}`}>
                <small>service</small> {service}
              </a>
              <ul className="rest-index">
                {ops.map((op) => (
                  <li key={anchor(op)}>
                    <a href={`#${anchor(op)}`}>{op.operation.operationId}</a>
                  </li>
                ))}
              </ul>
            </li>
          ))}
        </ul>
      </nav>
      <section className="docs">
        <h1>REST API</h1>
        <DocsTabs current="rest" />
        <p>
          Every RPC a browser may call is also REST/JSON on this server (the gateway transcodes it), and file bytes go up and down as
          they are. First put a credential in <code>DEVPYNODE_TOKEN</code>: a personal API key of scope <em>Full</em>
          {signedIn ? (
            <>
              {" "}
              (<Link to="/account">Account → API keys</Link>)
            </>
          ) : null}{" "}
          or an access token (<code>devpynode token</code>). An <em>AI only</em> key reaches the AI router&apos;s operations only,
          a <em>Read only</em> key the reading ones; keys, passwords and sessions need an access token. Each body holds the fields
          a first call needs; the schema has more.
        </p>
        <div className="code-block">
          <div className="code-block-head">
            <span>shell</span>
            <CopyButton text={"export DEVPYNODE_TOKEN=dpn_..."} />
          </div>
          <pre>
            <code>export DEVPYNODE_TOKEN=dpn_...</code>
          </pre>
        </div>
        <p>
          Errors are JSON <code>google.rpc.Status</code> (<code>code</code>, <code>message</code>, <code>details</code>) with the matching HTTP
          status. The whole description: <a href="/openapi.json">/openapi.json</a> (OpenAPI 2.0).
        </p>
        {api.error && (
          <p className="error" role="alert">
            {api.error.message}
          </p>
        )}
        {api.isPending && <p className="muted">Loading…</p>}
        {api.data &&
          shown.map(([service, ops]) => (
            <article className="api-entry" id={`rest-${service}`} key={service}>
              <h2>
                <small>service</small> {service}
              </h2>
              {ops.map((op) => (
                <RestOperationView key={anchor(op)} op={op} curl={curlFor(api.data, op, origin)} />
              ))}
            </article>
          ))}
      </section>
    </div>
  );
}

/** `code` spans in a summary, as the gRPC reference shows them. */
function withCode(text: string) {
  return text.split(/(`[^`]+`)/).map((part, i) => (part.length > 2 && part.startsWith("`") && part.endsWith("`") ? <code key={i}>{part.slice(1, -1)}</code> : part));
}

function RestOperationView({ op, curl }: { op: RestOperation; curl: string }) {
  const id = op.operation.operationId;
  const summary = op.operation.summary ?? "";
  return (
    <section className="rest-operation" id={anchor(op)} aria-label={`${op.operation.operationId}: ${op.method} ${op.path}`}>
      <h3>
        <span className={`method method-${op.method.toLowerCase()}`}>{op.method}</span> <code>{op.path}</code>
      </h3>
      <p className="muted">
        {/* Summaries are the RPCs' comments, which begin with the RPC's name; the two new paths' do not. */}
        {summary.startsWith(id) ? "" : `${id} — `}
        {withCode(summary)}
        {op.anonymous ? " (no token needed)" : ""}
        {op.streaming ? " Streams newline-delimited JSON." : ""}
      </p>
      <div className="code-block">
        <div className="code-block-head">
          <span>curl</span>
          <CopyButton text={curl} />
        </div>
        <pre>
          <code>{curl}</code>
        </pre>
      </div>
    </section>
  );
}

/** The two views of the API: its gRPC contracts and its REST paths. */
export function DocsTabs({ current }: { current: "grpc" | "rest" }) {
  return (
    <nav className="docs-tabs" aria-label="API views">
      <Link to="/docs" aria-current={current === "grpc" ? "page" : undefined}>
        gRPC reference
      </Link>
      <Link to="/docs/rest" aria-current={current === "rest" ? "page" : undefined}>
        REST and curl
      </Link>
    </nav>
  );
}
