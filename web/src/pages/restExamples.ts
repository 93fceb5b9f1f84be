/**
 * Ready-to-copy curl commands for the REST API, built from its OpenAPI 2.0 description (the same annotations
 * the gateway transcodes): the method, the path on this server's origin, the bearer header, and a JSON body
 * made from the request's schema (each field with a value of its type; enums their first real value).
 */

export interface Parameter {
  name: string;
  in: "path" | "query" | "body" | "header";
  required?: boolean;
  type?: string;
  format?: string;
  description?: string;
  enum?: string[];
  schema?: Schema;
}

export interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: string[];
  items?: Schema;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema;
  description?: string;
}

export interface Operation {
  summary?: string;
  description?: string;
  operationId: string;
  parameters?: Parameter[];
  responses?: Record<string, { description?: string }>;
  tags?: string[];
  security?: unknown[];
}

export interface OpenApi {
  info?: { description?: string };
  paths: Record<string, Record<string, Operation>>;
  definitions: Record<string, Schema>;
}

export interface RestOperation {
  method: string;
  path: string;
  operation: Operation;
  service: string;
  anonymous: boolean;
  streaming: boolean;
}

/** Every operation, grouped by service (its OpenAPI tag), services and paths in the document's order. */
export function operationsByService(api: OpenApi): Map<string, RestOperation[]> {
  const groups = new Map<string, RestOperation[]>();
  for (const [path, methods] of Object.entries(api.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const service = operation.tags?.[0] ?? "Other";
      const entry: RestOperation = {
        method: method.toUpperCase(),
        path,
        operation,
        service,
        // `security: []` on an operation: callable without a token (Register, Login, the JWKS).
        anonymous: Array.isArray(operation.security) && operation.security.length === 0,
        streaming: Object.values(operation.responses ?? {}).some((r) => r.description?.includes("streaming")),
      };
      groups.set(service, [...(groups.get(service) ?? []), entry]);
    }
  }
  return new Map([...groups.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function resolve(api: OpenApi, schema: Schema): Schema {
  return schema.$ref ? (api.definitions[schema.$ref.replace("#/definitions/", "")] ?? {}) : schema;
}

// Values for strings by field name, so that a copied command runs as it stands (the built-in model answers).
const NAMED: Record<string, string> = {
  model: "builtin/echo",
  content: "hello",
  text: "hello",
  prompt: "hello",
  input: "hello",
  title: "My conversation",
  name: "example",
  display_name: "Example",
  email: "someone@example.com",
  emoji: "👍",
};
// Arrays a request needs an element of to mean anything; every other array is left empty.
const ONE_ELEMENT = new Set(["messages", "inputs"]);

/** An example body for a schema: the fields a first call needs, with working values, in the lowerCamelCase
 * names the REST API documents. Ids, times, numbers, flags and enums are left out (their defaults are what a first
 * call wants, and an invented id or a oneof's second field is refused); nested messages go a few levels deep. */
export function example(api: OpenApi, schema: Schema, depth = 0, field = ""): unknown {
  const found = resolve(api, schema);
  if (found.enum?.length) return undefined;
  switch (found.type) {
    case "string":
      if (found.format === "date-time" || found.format === "int64" || found.format === "uint64") return undefined;
      if (found.format === "byte") return "aGVsbG8=";
      if (field === "id" || field.endsWith("_id") || field.endsWith("_ids")) return undefined;
      return NAMED[field] ?? (field === "password" || field.endsWith("_password") ? "a long passphrase" : undefined);
    case "integer":
    case "number":
    case "boolean":
      return undefined;
    case "array":
      return found.items && depth < 3 && ONE_ELEMENT.has(field) ? [example(api, found.items, depth + 1)] : undefined;
    default: {
      if (depth >= 3) return undefined;
      const out: Record<string, unknown> = {};
      for (const [name, property] of Object.entries(found.properties ?? {})) {
        const value = example(api, property, depth + 1, name);
        if (value !== undefined) out[camel(name)] = value;
      }
      return depth > 0 && Object.keys(out).length === 0 ? undefined : out;
    }
  }
}

/** Single quotes for a POSIX shell: `'` inside becomes `'\''`. */
function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The curl command for one operation against `origin` (the page's own: the gateway serves both). */
export function curlFor(api: OpenApi, op: RestOperation, origin: string): string {
  const parameters = op.operation.parameters ?? [];
  const pathNames = new Set(parameters.filter((p) => p.in === "path").flatMap((p) => [p.name, camel(p.name)]));
  // Path variables stay in capitals for the reader to fill in: /v1/files/FILE_ID.
  const path = op.path.replace(/\{([^}=]+)(=[^}]*)?\}/g, (_, name: string) => name.toUpperCase());
  const query = parameters
    .filter((p) => p.in === "query" && p.required)
    .map((p) => `${p.name}=${p.name.toUpperCase()}`)
    .join("&");
  const url = `${origin}${path}${query ? `?${query}` : ""}`;
  const lines = [`curl${op.streaming ? " -N" : ""}${op.method === "GET" ? "" : ` -X ${op.method}`} ${quote(url)}`];
  if (!op.anonymous) lines.push(`-H "Authorization: Bearer $DEVPYNODE_TOKEN"`);
  if (op.operation.operationId === "DownloadFileBytes") {
    lines.push(`-o FILE_NAME`); // add -H 'Range: bytes=0-1023' for part of it (206), -C - to resume
  } else if (op.operation.operationId === "UploadFileBytes") {
    lines.push(`-H 'Content-Type: text/plain'`, `--data-binary @FILE_NAME`);
  } else {
    const body = parameters.find((p) => p.in === "body");
    if (body?.schema) {
      const value = example(api, body.schema) ?? {};
      if (value && typeof value === "object" && !Array.isArray(value)) {
        // A body of `*` carries the path's fields too (the gateway refuses a body that disagrees with the path).
        for (const name of Object.keys(value)) if (pathNames.has(name)) delete (value as Record<string, unknown>)[name];
      }
      lines.push(`-H 'Content-Type: application/json'`, `-d ${quote(JSON.stringify(value))}`);
    }
  }
  return lines.join(" \\\n  ");
}
