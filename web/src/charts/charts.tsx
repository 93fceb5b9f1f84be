/**
 * Small hand-made SVG charts (no chart library): stacked bars over time, and horizontal bars for totals. Each
 * is an image with a text summary for screen readers; the numbers stay in a table beside it.
 */
import { useId } from "react";

/** Colours distinguishable from each other and at least 3:1 against white (WCAG's non-text contrast). */
const PALETTE = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];

export const seriesColour = (index: number) => PALETTE[index % PALETTE.length];

export interface Bucket {
  label: string;
  /** Value per series name. */
  values: Record<string, number>;
}

/** A compact form of a count: 1234 → "1.2k". */
export function compact(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e4) return `${Math.round(value / 1e3)}k`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return String(Math.round(value));
}

export function Legend({ series }: { series: string[] }) {
  return (
    <ul className="legend" aria-hidden="true">
      {series.map((name, i) => (
        <li key={name}>
          <span className="swatch" style={{ background: seriesColour(i) }} />
          {name}
        </li>
      ))}
    </ul>
  );
}

/** Stacked bars, one per bucket (a day), one colour per series (a model). */
export function StackedBars({ buckets, series, unit, summary }: { buckets: Bucket[]; series: string[]; unit: string; summary: string }) {
  const titleId = useId();
  const width = 640;
  const height = 200;
  const left = 40;
  const bottom = 22;
  const top = 8;
  const plot = height - bottom - top;
  const totals = buckets.map((b) => series.reduce((sum, s) => sum + (b.values[s] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const step = (width - left) / Math.max(1, buckets.length);
  const bar = Math.max(2, step * 0.7);
  const every = Math.ceil(buckets.length / 7); // at most about seven labels under the bars
  return (
    <figure className="chart-figure">
      <svg className="chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={titleId}>
        <title id={titleId}>{summary}</title>
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line className="axis" x1={left} x2={width} y1={top + plot * (1 - f)} y2={top + plot * (1 - f)} />
            <text x={left - 4} y={top + plot * (1 - f) + 4} textAnchor="end">
              {compact(max * f)}
            </text>
          </g>
        ))}
        {buckets.map((b, i) => {
          let y = top + plot;
          const x = left + i * step + (step - bar) / 2;
          return (
            <g key={b.label}>
              {series.map((s, k) => {
                const value = b.values[s] ?? 0;
                if (!value) return null;
                const h = (value / max) * plot;
                y -= h;
                return (
                  <rect key={s} x={x} y={y} width={bar} height={h} fill={seriesColour(k)}>
                    <title>{`${b.label}, ${s}: ${value.toLocaleString()} ${unit}`}</title>
                  </rect>
                );
              })}
              {i % every === 0 && (
                <text x={x + bar / 2} y={height - 6} textAnchor="middle">
                  {b.label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <Legend series={series} />
    </figure>
  );
}

/** Horizontal bars for totals (per user, per model), largest first as given. */
export function HorizontalBars({ rows, unit, summary }: { rows: { label: string; value: number }[]; unit: string; summary: string }) {
  const titleId = useId();
  const width = 640;
  const row = 24;
  const labelWidth = 210;
  const height = Math.max(row, rows.length * row) + 4;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const room = width - labelWidth - 60;
  return (
    <svg className="chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={titleId}>
      <title id={titleId}>{summary}</title>
      {rows.map((r, i) => {
        const y = i * row + 2;
        const label = r.label.length > 30 ? `${r.label.slice(0, 29)}…` : r.label;
        return (
          <g key={r.label}>
            <text x={labelWidth - 6} y={y + row / 2 + 4} textAnchor="end">
              {label}
            </text>
            <rect x={labelWidth} y={y + 3} width={Math.max(1, (r.value / max) * room)} height={row - 8} fill={seriesColour(i)}>
              <title>{`${r.label}: ${r.value.toLocaleString()} ${unit}`}</title>
            </rect>
            <text x={labelWidth + Math.max(1, (r.value / max) * room) + 4} y={y + row / 2 + 4}>
              {compact(r.value)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
