/** The models the router offers (ListModels), read once per page load and shared by every page. */
import { useQuery } from "@tanstack/react-query";
import { modelsQuery } from "../api/queries";
import type { Model } from "../gen/devpynode/ai/v1/ai_pb";

const NONE: Model[] = [];

export function useModels(): Model[] {
  return useQuery(modelsQuery).data ?? NONE;
}
