/**
 * AI usage over time, read as one GetUsage per day (the RPC sums a time range; days are the browser's local
 * days). Fourteen small calls when the account page opens, cached for a minute.
 */
import { queryOptions } from "@tanstack/react-query";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ai } from "./clients";
import type { Bucket } from "../charts/charts";

export const USAGE_DAYS = 14;

export interface DailyUsage {
  buckets: Bucket[];
  /** Models used in the range, most tokens first. */
  models: string[];
}

async function readDaily(days: number): Promise<DailyUsage> {
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  const starts = Array.from({ length: days }, (_, i) => {
    const day = new Date(today);
    day.setDate(today.getDate() - (days - 1 - i));
    return day;
  });
  const answers = await Promise.all(
    starts.map((start) => {
      const end = new Date(start);
      end.setDate(start.getDate() + 1);
      return ai.getUsage({ startTime: timestampFromMs(start.getTime()), endTime: timestampFromMs(end.getTime()) });
    }),
  );
  const totals = new Map<string, number>();
  const buckets = answers.map((answer, i) => {
    const values: Record<string, number> = {};
    for (const m of answer.models) {
      const tokens = Number((m.usage?.promptTokens ?? 0n) + (m.usage?.completionTokens ?? 0n));
      values[m.model] = tokens;
      totals.set(m.model, (totals.get(m.model) ?? 0) + tokens);
    }
    return { label: starts[i].toLocaleDateString(undefined, { month: "short", day: "numeric" }), values };
  });
  const models = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([model]) => model);
  return { buckets, models };
}

export const dailyUsageQuery = queryOptions({
  queryKey: ["ai", "usage", "daily", USAGE_DAYS] as const,
  queryFn: () => readDaily(USAGE_DAYS),
  staleTime: 60_000,
});
