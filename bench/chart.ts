// A grouped bar chart as plain SVG: one panel per measured dimension, bars
// at the median with a whisker over the min–max of the rounds. Hand-written
// so the report needs no chart dependency and diffs stay readable.

export interface ChartSeries {
  id: string;
  label: string;
  color: string;
}

export interface ChartBar {
  series: string;
  value: number;
  low?: number;
  high?: number;
}

export interface ChartGroup {
  label: string;
  bars: ChartBar[];
}

export interface ChartPanel {
  title: string;
  yLabel: string;
  series: ChartSeries[];
  groups: ChartGroup[];
}

const PANEL_WIDTH = 470;
const PANEL_HEIGHT = 330;
const MARGIN = { top: 64, right: 16, bottom: 46, left: 62 };
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

export function renderChart(panels: readonly ChartPanel[], caption: string): string {
  const width = PANEL_WIDTH * Math.max(1, panels.length);
  const height = PANEL_HEIGHT + 28;
  const body = panels.map((panel, i) => `<g transform="translate(${i * PANEL_WIDTH},0)">${renderPanel(panel)}</g>`).join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    body,
    `<text x="${width / 2}" y="${height - 8}" text-anchor="middle" fill="#555" font-size="11">${escape(caption)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

function renderPanel(panel: ChartPanel): string {
  const plotWidth = PANEL_WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const top = Math.max(1, ...panel.groups.flatMap((g) => g.bars.map((b) => Math.max(b.value, b.high ?? 0))));
  const step = niceStep(top / 5);
  const yMax = Math.ceil((top * 1.08) / step) * step;
  const y = (v: number) => MARGIN.top + plotHeight - (v / yMax) * plotHeight;
  const out: string[] = [];

  out.push(`<text x="${PANEL_WIDTH / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600" fill="#111">${escape(panel.title)}</text>`);
  // Legend under the title, wrapped onto a second line when the panel is too narrow.
  let legendX = 20;
  let legendY = 30;
  for (const s of panel.series) {
    const width = 22 + s.label.length * 6;
    if (legendX > 20 && legendX + width > PANEL_WIDTH - 8) {
      legendX = 20;
      legendY += 15;
    }
    out.push(`<rect x="${legendX}" y="${legendY}" width="10" height="10" fill="${s.color}"/>`);
    out.push(`<text x="${legendX + 14}" y="${legendY + 9}" fill="#333" font-size="11">${escape(s.label)}</text>`);
    legendX += width;
  }

  for (let v = 0; v <= yMax + step / 2; v += step) {
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#666" font-size="10">${formatTick(v)}</text>`);
  }
  out.push(
    `<text transform="translate(14,${MARGIN.top + plotHeight / 2}) rotate(-90)" text-anchor="middle" fill="#444" font-size="11">${escape(panel.yLabel)}</text>`,
  );

  const groupWidth = plotWidth / Math.max(1, panel.groups.length);
  const barWidth = Math.min(28, (groupWidth * 0.8) / Math.max(1, panel.series.length));
  panel.groups.forEach((group, gi) => {
    const groupLeft = MARGIN.left + gi * groupWidth + (groupWidth - barWidth * panel.series.length) / 2;
    panel.series.forEach((s, si) => {
      const bar = group.bars.find((b) => b.series === s.id);
      if (!bar || !Number.isFinite(bar.value)) return;
      const x = groupLeft + si * barWidth;
      const center = x + barWidth / 2;
      out.push(
        `<rect x="${x + 1}" y="${y(bar.value)}" width="${barWidth - 2}" height="${y(0) - y(bar.value)}" fill="${s.color}"><title>${escape(`${s.label}, ${group.label}: ${formatValue(bar.value)}`)}</title></rect>`,
      );
      if (bar.low !== undefined && bar.high !== undefined) {
        out.push(`<line x1="${center}" x2="${center}" y1="${y(bar.low)}" y2="${y(bar.high)}" stroke="#222"/>`);
        out.push(`<line x1="${center - 3}" x2="${center + 3}" y1="${y(bar.low)}" y2="${y(bar.low)}" stroke="#222"/>`);
        out.push(`<line x1="${center - 3}" x2="${center + 3}" y1="${y(bar.high)}" y2="${y(bar.high)}" stroke="#222"/>`);
      }
      const labelY = Math.min(y(bar.value), bar.high === undefined ? y(bar.value) : y(bar.high)) - 4;
      out.push(`<text x="${center}" y="${labelY}" text-anchor="middle" fill="#333" font-size="9">${formatValue(bar.value)}</text>`);
    });
    out.push(
      `<text x="${MARGIN.left + gi * groupWidth + groupWidth / 2}" y="${MARGIN.top + plotHeight + 18}" text-anchor="middle" fill="#333">${escape(group.label)}</text>`,
    );
  });
  out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(0)}" y2="${y(0)}" stroke="#999"/>`);
  return out.join('\n');
}

/** 1, 2 or 5 times a power of ten. */
function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

function formatTick(v: number): string {
  return v >= 1000 ? `${+(v / 1000).toFixed(1)}k` : String(+v.toFixed(2));
}

function formatValue(v: number): string {
  return v >= 100 ? String(Math.round(v)) : v.toFixed(v >= 10 ? 1 : 2);
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
