/**
 * The curves benchmark's plot: hand-written SVG (no scripts, no external fonts), two panels side
 * by side, so that GitHub's markdown renderer shows it as an image.
 */

/** One line of a panel: a part size's throughput by --concurrency. */
export interface CurveLine {
  label: string;
  /** Sorted by concurrency. */
  points: Array<{
    concurrency: number;
    mibPerSecond: number;
    /** Every part of the object was in flight at once: more concurrency could not add any. */
    allPartsInFlight?: boolean;
  }>;
  /** Whether this line is s3az's default part size (its default point is marked). */
  isDefaultPartSize: boolean;
}

export interface CurvePanel {
  title: string;
  xLabel: string;
  lines: CurveLine[];
  /** The same copy without the modelled link, at s3az's defaults: a horizontal reference. */
  reference?: { label: string; mibPerSecond: number };
}

export interface CurvesPlot {
  title: string;
  subtitle: string;
  /** s3az's default --concurrency, marked on the default part size's line. */
  defaultConcurrency: number;
  panels: CurvePanel[];
}

const WIDTH = 900;
const HEIGHT = 360;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const FONT = 'font-family="Helvetica, Arial, sans-serif"';

function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (char) =>
      ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[char] ?? char,
  );
}

/** A round step for about `count` ticks from 0 to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  const nice =
    fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10;
  return nice * power;
}

const round1 = (value: number) => Math.round(value * 10) / 10;

/** Renders the plot, about 900 x 360. */
export function renderCurvesSvg(plot: CurvesPlot): string {
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" ${FONT} font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold" fill="#222">${escapeXml(plot.title)}</text>`,
    `<text x="${WIDTH / 2}" y="38" text-anchor="middle" font-size="11" fill="#555">${escapeXml(plot.subtitle)}</text>`,
  );
  const panelWidth = WIDTH / Math.max(plot.panels.length, 1);
  plot.panels.forEach((panel, index) => {
    out.push(...renderPanel(panel, index * panelWidth, panelWidth, plot.defaultConcurrency));
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function renderPanel(
  panel: CurvePanel,
  left: number,
  width: number,
  defaultConcurrency: number,
): string[] {
  const out: string[] = [];
  const plotLeft = left + 58;
  const plotRight = left + width - 18;
  const plotTop = 70;
  const plotBottom = 268;
  const concurrencies = [
    ...new Set(panel.lines.flatMap((line) => line.points.map((point) => point.concurrency))),
  ].sort((a, b) => a - b);
  const values = panel.lines.flatMap((line) => line.points.map((point) => point.mibPerSecond));
  if (panel.reference) values.push(panel.reference.mibPerSecond);
  const finite = values.filter((value) => Number.isFinite(value));
  const yMaxRaw = Math.max(1, ...finite) * 1.08;
  const yStep = niceStep(yMaxRaw, 5);
  const yMax = Math.ceil(yMaxRaw / yStep) * yStep;
  const low = Math.log2(concurrencies[0] ?? 1);
  const high = Math.log2(concurrencies.at(-1) ?? 1);
  // Half a doubling of room on either side (and some width when there is a single point).
  const xFrom = low - 0.4;
  const xTo = Math.max(high, low + 1) + 0.4;
  const x = (concurrency: number) =>
    plotLeft + ((Math.log2(concurrency) - xFrom) / (xTo - xFrom)) * (plotRight - plotLeft);
  const y = (mib: number) => plotBottom - (mib / yMax) * (plotBottom - plotTop);
  const centre = (plotLeft + plotRight) / 2;

  out.push(
    `<text x="${round1(centre)}" y="60" text-anchor="middle" font-size="13" font-weight="bold" fill="#222">${escapeXml(panel.title)}</text>`,
  );
  // Grid and y ticks.
  for (let tick = 0; tick <= yMax + yStep / 1000; tick += yStep) {
    const ty = round1(y(tick));
    out.push(
      `<line x1="${round1(plotLeft)}" y1="${ty}" x2="${round1(plotRight)}" y2="${ty}" stroke="#e4e4e4" stroke-width="1"/>`,
      `<text x="${round1(plotLeft - 6)}" y="${round1(ty + 4)}" text-anchor="end" fill="#444">${Number(tick.toFixed(2))}</text>`,
    );
  }
  // x ticks: every power of two from the first concurrency to the last.
  for (let power = Math.floor(low); power <= Math.ceil(high); power++) {
    const value = 2 ** power;
    const tx = round1(x(value));
    out.push(
      `<line x1="${tx}" y1="${plotTop}" x2="${tx}" y2="${plotBottom}" stroke="#f0f0f0" stroke-width="1"/>`,
      `<line x1="${tx}" y1="${plotBottom}" x2="${tx}" y2="${plotBottom + 4}" stroke="#444"/>`,
      `<text x="${tx}" y="${plotBottom + 17}" text-anchor="middle" fill="#444">${value}</text>`,
    );
  }
  // Axes.
  out.push(
    `<line x1="${round1(plotLeft)}" y1="${plotBottom}" x2="${round1(plotRight)}" y2="${plotBottom}" stroke="#444"/>`,
    `<line x1="${round1(plotLeft)}" y1="${plotTop}" x2="${round1(plotLeft)}" y2="${plotBottom}" stroke="#444"/>`,
    `<text x="${round1(centre)}" y="${plotBottom + 34}" text-anchor="middle" fill="#222">${escapeXml(panel.xLabel)}</text>`,
    `<text transform="translate(${round1(left + 16)} ${round1((plotTop + plotBottom) / 2)}) rotate(-90)" text-anchor="middle" fill="#222">MiB/s</text>`,
  );
  // The reference: the same copy without the modelled link.
  if (panel.reference && Number.isFinite(panel.reference.mibPerSecond)) {
    const ry = round1(y(panel.reference.mibPerSecond));
    out.push(
      `<line x1="${round1(plotLeft)}" y1="${ry}" x2="${round1(plotRight)}" y2="${ry}" stroke="#777" stroke-width="1.5" stroke-dasharray="6 4"/>`,
      `<text x="${round1(plotRight - 4)}" y="${round1(ry - 5)}" text-anchor="end" font-size="11" fill="#555">${escapeXml(panel.reference.label)}</text>`,
    );
  }
  // The lines.
  panel.lines.forEach((line, index) => {
    const color = COLORS[index % COLORS.length];
    const points = line.points.filter((point) => Number.isFinite(point.mibPerSecond));
    if (points.length > 1) {
      const path = points
        .map((point) => `${round1(x(point.concurrency))},${round1(y(point.mibPerSecond))}`)
        .join(' ');
      out.push(
        `<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`,
      );
    }
    for (const point of points) {
      const fill = point.allPartsInFlight
        ? `fill="#fff" stroke="${color}" stroke-width="1.5"`
        : `fill="${color}"`;
      out.push(
        `<circle cx="${round1(x(point.concurrency))}" cy="${round1(y(point.mibPerSecond))}" r="3.5" ${fill}><title>${escapeXml(`${line.label}, --concurrency ${point.concurrency}: ${point.mibPerSecond.toFixed(1)} MiB/s${point.allPartsInFlight ? ' (every part in flight at once)' : ''}`)}</title></circle>`,
      );
    }
    // s3az's default: a ring around the point, labelled.
    const marked = line.isDefaultPartSize
      ? points.find((point) => point.concurrency === defaultConcurrency)
      : undefined;
    if (marked) {
      const mx = round1(x(marked.concurrency));
      const my = round1(y(marked.mibPerSecond));
      out.push(
        `<circle cx="${mx}" cy="${my}" r="7" fill="none" stroke="#000" stroke-width="1.5"/>`,
        `<text x="${mx}" y="${round1(my + 20)}" text-anchor="middle" font-size="11" fill="#000" stroke="#fff" stroke-width="3" paint-order="stroke">s3az default</text>`,
      );
    }
  });
  // Legend, under the axis label.
  const legendY = plotBottom + 56;
  let legendX = plotLeft;
  panel.lines.forEach((line, index) => {
    const color = COLORS[index % COLORS.length];
    out.push(
      `<line x1="${round1(legendX)}" y1="${legendY - 4}" x2="${round1(legendX + 18)}" y2="${legendY - 4}" stroke="${color}" stroke-width="2"/>`,
      `<circle cx="${round1(legendX + 9)}" cy="${legendY - 4}" r="3" fill="${color}"/>`,
      `<text x="${round1(legendX + 23)}" y="${legendY}" fill="#222">${escapeXml(line.label)}</text>`,
    );
    legendX += 30 + line.label.length * 6.5;
  });
  if (panel.reference) {
    out.push(
      `<line x1="${round1(legendX)}" y1="${legendY - 4}" x2="${round1(legendX + 18)}" y2="${legendY - 4}" stroke="#777" stroke-width="1.5" stroke-dasharray="6 4"/>`,
      `<text x="${round1(legendX + 23)}" y="${legendY}" fill="#222">no link</text>`,
    );
    legendX += 80;
  }
  if (panel.lines.some((line) => line.points.some((point) => point.allPartsInFlight))) {
    out.push(
      `<circle cx="${round1(legendX + 4)}" cy="${legendY - 4}" r="3.5" fill="#fff" stroke="#444" stroke-width="1.5"/>`,
      `<text x="${round1(legendX + 12)}" y="${legendY}" fill="#222">all parts in flight</text>`,
    );
  }
  return out;
}
