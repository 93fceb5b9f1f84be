/** The models the router offers (ListModels), fetched once per page load. */
import { useEffect, useState } from "react";
import { ai } from "../api/clients";
import type { Model } from "../gen/devpynode/ai/v1/ai_pb";

let cached: Promise<Model[]> | null = null;

export function useModels(): Model[] {
  const [models, setModels] = useState<Model[]>([]);
  useEffect(() => {
    cached ??= ai.listModels({ pageSize: 100 }).then(
      (r) => r.models,
      (error) => {
        cached = null;
        throw error;
      },
    );
    let live = true;
    cached.then((m) => live && setModels(m)).catch(() => undefined);
    return () => {
      live = false;
    };
  }, []);
  return models;
}
