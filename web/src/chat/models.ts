/**
 * The models the router offers (ListModels), read once per page load and shared by every page, and the model a
 * new conversation starts with: the one last chosen in this browser (localStorage), else the router's
 * `default` alias, which picks the first available provider.
 */
import { useCallback, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { modelsQuery } from "../api/queries";
import type { Model } from "../gen/devpynode/ai/v1/ai_pb";

const NONE: Model[] = [];
const LAST_MODEL = "devpynode.model";
export const DEFAULT_MODEL = "default";

export function useModels(): Model[] {
  return useQuery(modelsQuery).data ?? NONE;
}

function remembered(): string {
  try {
    return localStorage.getItem(LAST_MODEL) ?? "";
  } catch {
    return "";
  }
}

/** The model for the next new conversation, and a setter that remembers the choice for next time. */
export function useLastModel(): [string, (model: string) => void] {
  const models = useModels();
  const [chosen, setChosen] = useState(remembered);
  // A remembered model that has gone or is down falls back to the default alias.
  const usable = models.length === 0 || models.some((m) => m.id === chosen && m.available);
  const model = chosen && usable ? chosen : DEFAULT_MODEL;
  const choose = useCallback((next: string) => {
    setChosen(next);
    rememberModel(next);
  }, []);
  return [model, choose];
}

export function rememberModel(model: string): void {
  try {
    localStorage.setItem(LAST_MODEL, model);
  } catch {
    // Private windows may refuse storage: the choice is then only for this page.
  }
}
