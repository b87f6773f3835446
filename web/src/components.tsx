// Small shared pieces: polling, error box, state badge, a tiny SVG line chart.
import { useEffect, useRef, useState } from "react";

/** Call `load` now and every `ms` while mounted; returns [data, error, reload]. */
export function usePoll<T>(load: () => Promise<T>, ms: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let alive = true;
    let timer: number | undefined;
    const run = async () => {
      try {
        const value = await loadRef.current();
        if (alive) {
          setData(value);
          setError(null);
        }
      } catch (err) {
        if (alive) setError(err instanceof Error ? err.message : String(err));
      }
      if (alive) timer = window.setTimeout(run, ms);
    };
    run();
    return () => {
      alive = false;
      window.clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ms, tick, ...deps]);
  return [data, error, () => setTick((t) => t + 1)] as const;
}

export function ErrorBox({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return (
    <div className="error" role="alert">
      {error}
    </div>
  );
}

export function Badge({ state }: { state: string }) {
  return <span className={`badge state-${state.replace(/[^a-z_]/gi, "")}`}>{state}</span>;
}

/** A line chart of the last values; `max` fixes the top of the scale. */
export function Chart({
  title,
  values,
  max,
  unit,
  testId,
}: {
  title: string;
  values: number[];
  max?: number;
  unit: string;
  testId?: string;
}) {
  const width = 320;
  const height = 90;
  const top = Math.max(max ?? 0, ...values, 1);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values
    .map((v, i) => `${(i * step).toFixed(1)},${(height - (v / top) * height).toFixed(1)}`)
    .join(" ");
  const last = values.length ? values[values.length - 1] : null;
  return (
    <figure className="chart" data-testid={testId}>
      <figcaption>
        {title}: <strong>{last === null ? "–" : `${last.toFixed(1)} ${unit}`}</strong>
        <span className="muted"> (max {top.toFixed(0)} {unit})</span>
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img">
        <rect x="0" y="0" width={width} height={height} className="chart-bg" />
        {values.length > 1 && <polyline points={points} className="chart-line" />}
      </svg>
    </figure>
  );
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "–";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  return `${(n / (1 << 20)).toFixed(0)} MiB`;
}
