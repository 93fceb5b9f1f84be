/**
 * Small hand-made SVG charts (no chart library): stacked bars over time, and horizontal bars for totals. Each
 * is an image with a text summary for screen readers; the numbers stay in a table beside it.
 */
import { useId, useLayoutEffect, useRef, useState, type RefObject } from "react";

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

/** The width an element is drawn at, followed as it changes (the charts draw in real pixels, so text stays legible). */
function useWidth(fallback: number): [RefObject<HTMLDivElement | null>, number] {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(fallback);
  // Measured before the first paint, so the chart never shows at the fallback width (wider than a phone).
  useLayoutEffect(() => {
    const element = ref.current;
    if (!element) return;
    setWidth(Math.max(200, Math.floor(element.clientWidth)));
    const observer = new ResizeObserver(([entry]) => setWidth(Math.max(200, Math.floor(entry.contentRect.width))));
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

/** Stacked bars, one per bucket (a day), one colour per series (a model). */
export function StackedBars({ buckets, series, unit, summary }: { buckets: Bucket[]; series: string[]; unit: string; summary: string }) {
  const titleId = useId();
  const [box, width] = useWidth(640);
  const height = 180;
  const left = 44;
  const bottom = 22;
  const top = 8;
  const plot = height - bottom - top;
  const totals = buckets.map((b) => series.reduce((sum, s) => sum + (b.values[s] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const step = (width - left) / Math.max(1, buckets.length);
  const bar = Math.max(2, step * 0.7);
  const every = Math.ceil(buckets.length / Math.max(2, Math.floor((width - left) / 70))); // labels 70 px apart at least
  return (
    <figure className="chart-figure">
      <div ref={box}>
        <svg className="chart" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={titleId}>
          <title id={titleId}>{summary}</title>
          {[0, 0.5, 1].map((f) => (
            <g key={f}>
              <line className="axis" x1={left} x2={width} y1={top + plot * (1 - f)} y2={top + plot * (1 - f)} />
              <text x={left - 6} y={top + plot * (1 - f) + 4} textAnchor="end">
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
                {(buckets.length - 1 - i) % every === 0 && (
                  <text x={x + bar / 2} y={height - 6} textAnchor="middle">
                    {b.label}
                  </text>
                )}
              </g>
            );
          })}
        </svg>
      </div>
      <Legend series={series} />
    </figure>
  );
}

/** Horizontal bars for totals (per user, per model), largest first as given: plain HTML, legible at any width. */
export function HorizontalBars({ rows, unit, summary }: { rows: { label: string; value: number }[]; unit: string; summary: string }) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return (
    <div className="hbars" role="img" aria-label={summary}>
      {rows.map((r, i) => (
        <div className="hbar" key={r.label} title={`${r.label}: ${r.value.toLocaleString()} ${unit}`}>
          <span className="hbar-label">{r.label}</span>
          <span className="hbar-track">
            <span className="hbar-fill" style={{ width: `${Math.max(1, (r.value / max) * 100)}%`, background: seriesColour(i) }} />
          </span>
          <span className="hbar-value">{compact(r.value)}</span>
        </div>
      ))}
    </div>
  );
}
