/**
 * The incident chart: a small, dependency-free SVG bar chart (pure function, no I/O).
 * One panel per metric, each with a "before" and an "after" bar and text labels for the title,
 * the values and the bars, so the picture reads without the Markdown around it.
 */

/** One metric shown as a pair of bars. */
export interface ChartPanel {
  /** Panel title, e.g. "error rate". */
  readonly title: string;
  /** Unit printed after each value, e.g. "%" or " ms". */
  readonly unit: string;
  readonly before: number;
  readonly after: number;
  /** Top of the scale; default: the larger value plus headroom (1 when both are 0). */
  readonly max?: number;
}

const PANEL_WIDTH = 230;
const PLOT_TOP = 96;
const PLOT_HEIGHT = 180;
const BAR_WIDTH = 64;
const COLORS = { before: "#c0392b", after: "#27864a", axis: "#444", text: "#222", muted: "#666" };

/** Escapes text for an SVG text node or attribute. */
export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] as string);
}

/** A number with a few significant digits: 0.00123 → "0.0012", 12.345 → "12.3", 1234.5 → "1,235". */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 100) return Math.round(v).toLocaleString("en-US");
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

/**
 * Renders the panels side by side as one SVG document.
 * @param title   chart title (first line)
 * @param caption smaller second line (e.g. the load and the host)
 */
export function renderBarChart(title: string, caption: string, panels: readonly ChartPanel[]): string {
  const width = Math.max(1, panels.length) * PANEL_WIDTH + 20;
  const height = PLOT_TOP + PLOT_HEIGHT + 62;
  const base = PLOT_TOP + PLOT_HEIGHT;
  const out: string[] = [];
  const text = (x: number, y: number, s: string, attrs = "") => out.push(`<text x="${x}" y="${y}" ${attrs}>${escapeXml(s)}</text>`);

  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
  );
  text(width / 2, 24, title, `text-anchor="middle" font-size="16" font-weight="bold" fill="${COLORS.text}"`);
  text(width / 2, 44, caption, `text-anchor="middle" font-size="11" fill="${COLORS.muted}"`);

  panels.forEach((p, i) => {
    const x0 = 10 + i * PANEL_WIDTH;
    const top = p.max ?? (Math.max(p.before, p.after, 0) * 1.18 || 1);
    const scale = (v: number) => (Number.isFinite(v) && v > 0 ? Math.min(v / top, 1) * PLOT_HEIGHT : 0);
    text(x0 + PANEL_WIDTH / 2, PLOT_TOP - 30, p.title, `text-anchor="middle" font-size="13" font-weight="bold" fill="${COLORS.text}"`);
    out.push(`<line x1="${x0 + 20}" y1="${base}" x2="${x0 + PANEL_WIDTH - 20}" y2="${base}" stroke="${COLORS.axis}" stroke-width="1"/>`);
    (["before", "after"] as const).forEach((which, j) => {
      const value = p[which];
      const h = scale(value);
      const bx = x0 + 38 + j * (BAR_WIDTH + 26);
      // A zero value still gets a hairline so "0" visibly sits on the axis.
      out.push(
        `<rect x="${bx}" y="${(base - Math.max(h, 1)).toFixed(1)}" width="${BAR_WIDTH}" height="${Math.max(h, 1).toFixed(1)}" fill="${COLORS[which]}"><title>${escapeXml(`${p.title} ${which}: ${formatValue(value)}${p.unit}`)}</title></rect>`,
      );
      text(
        bx + BAR_WIDTH / 2,
        Number((base - Math.max(h, 1) - 6).toFixed(1)),
        `${formatValue(value)}${p.unit}`,
        `text-anchor="middle" font-size="12" fill="${COLORS.text}"`,
      );
      text(bx + BAR_WIDTH / 2, base + 17, which, `text-anchor="middle" font-size="12" fill="${COLORS[which]}"`);
    });
  });
  text(
    width / 2,
    height - 12,
    "before: untuned baseline (set by hand)   after: the profile applied with pulumi up",
    `text-anchor="middle" font-size="11" fill="${COLORS.muted}"`,
  );
  out.push("</svg>");
  return out.join("\n") + "\n";
}
