/** For administrators: what each provider holds, pulling a model with its progress (cancellable), unloading and deleting. */
import { useRef, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { modelAdmin } from "../api/clients";
import { describeError } from "../api/errors";
import { keys } from "../api/queries";
import { ProviderModelAction, ProviderModelCapability, type ProviderModel } from "../gen/devpynode/ai/v1/models_pb";

/** Bytes for people, in decimal units as Ollama writes them. */
export function modelSize(bytes: bigint | number): string {
  let value = Number(bytes);
  if (!value) return "";
  for (const unit of ["B", "kB", "MB", "GB"]) {
    if (value < 1000) return unit === "B" ? `${value} B` : `${value.toFixed(1)} ${unit}`;
    value /= 1000;
  }
  return `${value.toFixed(1)} TB`;
}

/** The name the service takes: `provider/model`, or an Ollama model name alone (a first part with a dot is a host). */
export function pullName(typed: string): string {
  const name = typed.trim();
  const [first, ...rest] = name.split("/");
  return rest.length && !first.includes(".") ? name : `ollama/${name}`;
}

interface Pulling {
  name: string;
  status: string;
  completed: number;
  total: number;
}

export function AdminModels() {
  const client = useQueryClient();
  const listed = useQuery({
    queryKey: keys.providerModels,
    queryFn: async () => await modelAdmin.listProviderModels({ pageSize: 100 }),
  });
  const [typed, setTyped] = useState("");
  const [pulling, setPulling] = useState<Pulling | null>(null);
  const [pullError, setPullError] = useState<unknown>(null);
  const [done, setDone] = useState("");
  const abort = useRef<AbortController | null>(null);
  const refresh = () => void client.invalidateQueries({ queryKey: keys.providerModels });
  const change = useMutation({
    mutationFn: async ({ model, action }: { model: ProviderModel; action: "delete" | "unload" }) => {
      if (action === "delete") await modelAdmin.deleteProviderModel({ name: model.name });
      else await modelAdmin.unloadProviderModel({ name: model.name });
    },
    onSettled: refresh,
  });

  async function pull(name: string) {
    const controller = new AbortController();
    abort.current = controller;
    setPullError(null);
    setDone("");
    setPulling({ name, status: "starting", completed: 0, total: 0 });
    try {
      // Aborting the call cancels the gRPC stream; the server then closes its download from Ollama.
      for await (const step of modelAdmin.pullProviderModel({ name }, { signal: controller.signal })) {
        setPulling({ name, status: step.status, completed: Number(step.completedBytes), total: Number(step.totalBytes) });
        if (step.done) setDone(`Pulled ${step.providerModel?.modelId ?? name}.`);
      }
    } catch (error) {
      setPullError(error);
    } finally {
      abort.current = null;
      setPulling(null);
      refresh();
    }
  }

  const models = listed.data?.providerModels ?? [];
  const failure = listed.error ?? change.error ?? pullError;
  return (
    <section className="admin-models" aria-labelledby="admin-models-heading">
      <h2 id="admin-models-heading">Models</h2>
      {failure ? <p className="error" role="alert">{describeError(failure)}</p> : null}
      {listed.data?.unreachable.map((provider) => (
        <p key={provider} className="warning">
          {provider.replace("providers/", "")} did not answer.
        </p>
      ))}
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          if (typed.trim() && !pulling) void pull(pullName(typed));
        }}
      >
        <label>
          Pull a model
          <input value={typed} placeholder="e.g. llama3.2:1b" onChange={(e) => setTyped(e.target.value)} />
        </label>
        <button type="submit" disabled={!!pulling || !typed.trim()}>
          Pull
        </button>
      </form>
      {pulling && (
        <div className="pull-progress">
          <label>
            {pulling.name}: {pulling.status}
            {pulling.total > 0 && ` (${modelSize(pulling.completed)} of ${modelSize(pulling.total)})`}
            <progress max={pulling.total || 1} value={pulling.total ? pulling.completed : 0} />
          </label>
          <button type="button" onClick={() => abort.current?.abort()}>
            Cancel pull
          </button>
        </div>
      )}
      {done && <p role="status">{done}</p>}
      <table className="provider-models reflow" aria-busy={listed.isPending}>
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col">Size</th>
            <th scope="col">Family</th>
            <th scope="col">Quantisation</th>
            <th scope="col">Context</th>
            <th scope="col">Capabilities</th>
            <th scope="col">Loaded</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {models.map((model) => (
            <tr key={model.name} data-model={model.modelId}>
              <td data-label="Model">{model.modelId}</td>
              <td data-label="Size">{modelSize(model.sizeBytes)}</td>
              <td data-label="Family">{[model.family, model.parameterSize].filter(Boolean).join(" ")}</td>
              <td data-label="Quantisation">{model.quantization}</td>
              <td data-label="Context">{model.contextLength ? String(model.contextLength) : ""}</td>
              <td data-label="Capabilities">{model.capabilities.map((c) => ProviderModelCapability[c].toLowerCase()).join(", ")}</td>
              <td data-label="Loaded">{model.loaded ? "yes" : "no"}</td>
              <td data-label="Actions">
                {model.loaded && model.actions.includes(ProviderModelAction.UNLOAD) && (
                  <button type="button" onClick={() => change.mutate({ model, action: "unload" })}>
                    Unload {model.modelId}
                  </button>
                )}
                {model.actions.includes(ProviderModelAction.DELETE) && (
                  <button
                    type="button"
                    onClick={() => {
                      if (window.confirm(`Delete ${model.modelId} from ${model.provider}?`)) change.mutate({ model, action: "delete" });
                    }}
                  >
                    Delete {model.modelId}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
