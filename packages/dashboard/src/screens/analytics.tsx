// Analytics: volume over time, decisions and block reasons, top tools, approvals, overhead.
import type { JSX } from "preact";
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { qs } from "../api";
import { ErrorNote, fmtMs, navigate, str, toMs, useApi, useRoute } from "../util";

type Rec = Record<string, unknown>;

const RANGES: Array<[string, string, number]> = [
  ["1h", "Last hour", 3600],
  ["24h", "Last 24 hours", 86400],
  ["7d", "Last 7 days", 7 * 86400],
  ["30d", "Last 30 days", 30 * 86400],
];

function entries(value: unknown): Array<[string, number]> {
  if (Array.isArray(value)) {
    return value.map((v) => {
      const r = v as Rec;
      return [str(r.tool), Number(r.count ?? 0)];
    });
  }
  if (value && typeof value === "object") return Object.entries(value as Record<string, number>).map(([k, v]) => [k, Number(v)]);
  return [];
}

function Bars(props: { title: string; rows: Array<[string, number]> }): JSX.Element {
  const max = Math.max(1, ...props.rows.map(([, n]) => n));
  return (
    <section class="card">
      <h2>{props.title}</h2>
      {props.rows.length === 0 ? (
        <p class="muted">Nothing in this range.</p>
      ) : (
        <table class="bars">
          <tbody>
            {props.rows.map(([k, n]) => (
              <tr key={k}>
                <th scope="row">{k}</th>
                <td class="bar">
                  <meter min={0} max={max} value={n} aria-label={`${k}: ${n}`} />
                </td>
                <td class="num">{n}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function VolumeChart(props: { series: Rec[] }): JSX.Element {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const xs: number[] = [];
    const total: number[] = [];
    const blocked: number[] = [];
    for (const point of props.series) {
      const t = toMs(point.hour);
      if (t === null) continue;
      xs.push(t / 1000);
      total.push(Number(point.total ?? 0));
      blocked.push(Number(point.blocked ?? 0));
    }
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const axis = { stroke: dark ? "#c9d1d9" : "#333", grid: { stroke: dark ? "#30363d" : "#e5e5e5" } };
    const plot = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 220,
        series: [
          {},
          { label: "calls", stroke: "#2f81f7", width: 2, fill: "rgba(47,129,247,0.12)" },
          { label: "blocked", stroke: "#d1242f", width: 2 },
        ],
        axes: [axis, axis],
      },
      [xs, total, blocked],
      el,
    );
    const resize = () => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 });
    window.addEventListener("resize", resize);
    return () => {
      window.removeEventListener("resize", resize);
      plot.destroy();
    };
  }, [props.series]);
  return <div ref={box} class="chart" role="img" aria-label="Calls per hour, and blocked calls" />;
}

export function Analytics(): JSX.Element {
  const { query } = useRoute();
  const range = query.get("range") ?? "24h";
  const seconds = (RANGES.find(([k]) => k === range) ?? RANGES[1])[2];
  // Rounded to the minute so re-renders reuse the same request.
  const to = Math.ceil(Date.now() / 60000) * 60000;
  const from = to - seconds * 1000;
  const stats = useApi<{ data: Rec }>(
    `/api/analytics${qs({ from: new Date(from).toISOString(), to: new Date(to).toISOString() })}`,
  );
  const d = stats.data?.data ?? {};
  const approvals = d.approvals as Rec | undefined;
  const overhead = d.overhead_ms as Rec | undefined;
  return (
    <div>
      <div class="toolbar">
        <h1>Analytics</h1>
        <label>
          Range{" "}
          <select value={range} onChange={(e) => navigate(`/analytics?range=${(e.target as HTMLSelectElement).value}`, true)}>
            {RANGES.map(([k, label]) => (
              <option value={k} key={k}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorNote error={stats.error} />
      <section class="card">
        <h2>Volume per hour ({str(d.total)} calls)</h2>
        <VolumeChart series={(d.series ?? []) as Rec[]} />
      </section>
      <div class="grid">
        <Bars title="Decisions" rows={entries(d.by_decision)} />
        <Bars title="Block reasons" rows={entries(d.by_block_reason)} />
        <Bars title="Top tools" rows={entries(d.top_tools)} />
        <section class="card">
          <h2>Approvals and overhead</h2>
          <dl class="facts">
            <dt>Approval rate</dt>
            <dd>
              {typeof approvals?.approval_rate === "number" ? `${Math.round(approvals.approval_rate * 100)}%` : "—"} of{" "}
              {str(approvals?.requested)} requested ({str(approvals?.approved)} approved, {str(approvals?.denied)} denied,{" "}
              {str(approvals?.timed_out)} timed out)
            </dd>
            <dt>Wait (median / p95)</dt>
            <dd>
              {fmtMs(approvals?.wait_ms_p50)} / {fmtMs(approvals?.wait_ms_p95)}
            </dd>
            <dt>Proxy overhead p50 / p95 / p99</dt>
            <dd>
              {fmtMs(overhead?.p50)} / {fmtMs(overhead?.p95)} / {fmtMs(overhead?.p99)} ({str(overhead?.samples)} calls)
            </dd>
          </dl>
        </section>
      </div>
    </div>
  );
}
