import { formatBytes } from '../../src/core/range-plan.ts';
import type { CpuUsage } from './cpu.ts';
import {
  type CopyRun,
  DIRECTIONS,
  type Direction,
  type LimitRun,
  type ThroughputResult,
  type Tool,
} from './model.ts';
import { median } from './run.ts';

const MiB = 1024 * 1024;

/** Medians of one tool's copies in one direction. */
export interface ToolSummary {
  runs: number;
  /** Median wall time. */
  seconds: number;
  /** Size / median wall time. */
  mibPerSecond: number;
  /** Size / shortest wall time. */
  bestMibPerSecond: number;
  /** Highest peak RSS over the runs. */
  maxRssBytes: number;
  /** s3az only: median of its own timer. */
  selfSeconds?: number;
  transfer?: string;
  /** Median CPU cores busy (CPU seconds / wall seconds) per process, `client` being the tool. */
  cores: Record<string, number>;
  /** Median share of the machine's CPU that was busy. */
  machineBusy: number;
}

/** Medians of one limit pass in one direction. */
export interface PassSummary {
  side: string;
  runs: number;
  /** Median. */
  seconds: number;
  mibPerSecond: number;
  /** Size / shortest pass: what the emulator can do when nothing else disturbs it. */
  bestMibPerSecond: number;
  cores: Record<string, number>;
  machineBusy: number;
}

/** Everything reported for one direction. */
export interface DirectionSummary {
  direction: Direction;
  s3az: ToolSummary;
  rclone: ToolSummary | undefined;
  /** rclone median seconds / s3az median seconds: above 1, s3az is faster. */
  ratioToRclone: number | undefined;
  limit: {
    read: PassSummary;
    write: PassSummary;
    /**
     * The bound used: min(read, write) of the best passes, as a copy overlaps its reads and
     * writes, and a disturbed pass is only ever slower.
     */
    mibPerSecond: number;
    /** 1 / (1/read + 1/write) of the best passes: the bound if reads and writes could not overlap. */
    serialMibPerSecond: number;
  };
  /** s3az MiB/s / limit MiB/s. */
  fractionOfLimit: number;
  rcloneFractionOfLimit: number | undefined;
  memory: {
    smallMaxRssBytes: number;
    bigMaxRssBytes: number;
    /** Peak RSS of the big copy / that of the small one. */
    ratio: number;
  };
}

/** One target from the issue, checked. */
export interface TargetCheck {
  name: string;
  value: number;
  display: string;
  threshold: string;
  met: boolean;
}

function coresOf(runs: ReadonlyArray<{ cpuSeconds: number; cpu: CpuUsage }>, wall: number[]) {
  const names = Object.keys(runs[0]?.cpu.processes ?? {});
  const cores: Record<string, number> = {
    client: median(runs.map((run, index) => run.cpuSeconds / (wall[index] ?? 1))),
  };
  for (const name of names) {
    cores[name] = median(
      runs.map((run, index) => (run.cpu.processes[name] ?? 0) / (wall[index] ?? 1)),
    );
  }
  // Whatever else kept the machine busy: other processes, kernel threads.
  cores.other = median(
    runs.map((run, index) => {
      const known = Object.values(run.cpu.processes).reduce((sum, value) => sum + value, 0);
      return Math.max(0, run.cpu.machineSeconds - run.cpuSeconds - known) / (wall[index] ?? 1);
    }),
  );
  return { cores, machineBusy: median(runs.map((run) => run.cpu.machineBusy)) };
}

function toolSummary(runs: CopyRun[]): ToolSummary | undefined {
  const first = runs[0];
  if (!first) return undefined;
  const seconds = median(runs.map((run) => run.seconds));
  const self = runs.flatMap((run) => (run.selfSeconds === undefined ? [] : [run.selfSeconds]));
  return {
    runs: runs.length,
    seconds,
    mibPerSecond: first.size / MiB / seconds,
    bestMibPerSecond: first.size / MiB / Math.min(...runs.map((run) => run.seconds)),
    maxRssBytes: Math.max(...runs.map((run) => run.maxRssBytes)),
    ...(self.length > 0 && { selfSeconds: median(self) }),
    ...(first.transfer !== undefined && {
      transfer: [...new Set(runs.map((run) => run.transfer))].join(','),
    }),
    ...coresOf(
      runs,
      runs.map((run) => run.seconds),
    ),
  };
}

function passSummary(runs: LimitRun[]): PassSummary {
  const seconds = median(runs.map((run) => run.seconds));
  return {
    side: runs[0]?.side ?? '',
    runs: runs.length,
    seconds,
    mibPerSecond: (runs[0]?.size ?? 0) / MiB / seconds,
    bestMibPerSecond: (runs[0]?.size ?? 0) / MiB / Math.min(...runs.map((run) => run.seconds)),
    ...coresOf(
      runs,
      runs.map((run) => run.seconds),
    ),
  };
}

/** Medians, ratios and bounds per direction. */
export function summarize(result: ThroughputResult): DirectionSummary[] {
  const copies = result.runs.filter((run): run is CopyRun => run.kind === 'copy');
  const limits = result.runs.filter((run): run is LimitRun => run.kind === 'limit');
  return (Object.keys(DIRECTIONS) as Direction[]).map((direction) => {
    const of = (tool: Tool, object: CopyRun['object']) =>
      copies.filter(
        (run) => run.tool === tool && run.direction === direction && run.object === object,
      );
    const s3azBig = of('s3az', 'main');
    const s3az = toolSummary(s3azBig);
    if (!s3az) throw new Error(`no s3az runs for ${direction}`);
    const rclone = toolSummary(of('rclone', 'main'));
    const pass = (kind: 'read' | 'write') =>
      passSummary(limits.filter((run) => run.direction === direction && run.pass === kind));
    const read = pass('read');
    const write = pass('write');
    const bound = Math.min(read.bestMibPerSecond, write.bestMibPerSecond);
    const smallMaxRssBytes = Math.max(...of('s3az', 'small').map((run) => run.maxRssBytes));
    return {
      direction,
      s3az,
      rclone,
      ratioToRclone: rclone ? rclone.seconds / s3az.seconds : undefined,
      limit: {
        read,
        write,
        mibPerSecond: bound,
        serialMibPerSecond: 1 / (1 / read.bestMibPerSecond + 1 / write.bestMibPerSecond),
      },
      fractionOfLimit: s3az.mibPerSecond / bound,
      rcloneFractionOfLimit: rclone ? rclone.mibPerSecond / bound : undefined,
      memory: {
        smallMaxRssBytes,
        bigMaxRssBytes: s3az.maxRssBytes,
        ratio: s3az.maxRssBytes / smallMaxRssBytes,
      },
    };
  });
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
const percent = (fraction: number, digits = 0) => `${(fraction * 100).toFixed(digits)}%`;

/** Median cores used by the rest of the machine above which a run counts as disturbed. */
const DISTURBED_CORES = 0.2;

/** Warnings about the measurement itself (a busy machine). */
export function measurementWarnings(rows: DirectionSummary[]): string[] {
  const others = rows.flatMap((row) => [
    row.s3az.cores.other ?? 0,
    row.rclone?.cores.other ?? 0,
    row.limit.read.cores.other ?? 0,
    row.limit.write.cores.other ?? 0,
  ]);
  const worst = Math.max(...others);
  return worst > DISTURBED_CORES
    ? [
        `other processes kept up to ${worst.toFixed(2)} cores busy (median) during the measurements (column "other"): the numbers are disturbed; rerun on a quiet machine, or with more --runs`,
      ]
    : [];
}

/** The issue's targets, checked against the summaries. */
export function checkTargets(result: ThroughputResult, rows: DirectionSummary[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const big = formatBytes(result.options.size);
  for (const row of rows) {
    const label = DIRECTIONS[row.direction].label;
    if (row.ratioToRclone !== undefined) {
      checks.push({
        name: `${label}: s3az speed / rclone speed`,
        value: row.ratioToRclone,
        display: `${row.ratioToRclone.toFixed(3)}x`,
        threshold: '>= 1.15 (goal 1.3)',
        met: row.ratioToRclone >= 1.15,
      });
    }
    checks.push({
      name: `${label}: s3az share of the emulator limit`,
      value: row.fractionOfLimit,
      display: percent(row.fractionOfLimit, 1),
      threshold: '>= 75% (goal 85%)',
      met: row.fractionOfLimit >= 0.75,
    });
    checks.push({
      name: `${label}: s3az peak RSS, ${big} copy`,
      value: row.memory.bigMaxRssBytes,
      display: mb(row.memory.bigMaxRssBytes),
      threshold: '< 300 MB',
      met: row.memory.bigMaxRssBytes < 300e6,
    });
    checks.push({
      name: `${label}: s3az peak RSS, ${big} copy / ${formatBytes(result.smallSize)} copy`,
      value: row.memory.ratio,
      display: `${row.memory.ratio.toFixed(3)}x`,
      threshold: '<= 1.3x',
      met: row.memory.ratio <= 1.3,
    });
  }
  return checks;
}

/** A Markdown table with padded columns; `right` marks right-aligned columns. */
function table(headers: string[], rows: string[][], right: boolean[]): string[] {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    `| ${cells
      .map((cell, column) =>
        right[column] ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0),
      )
      .join(' | ')} |`;
  const rule = `|${widths.map((width, column) => (right[column] ? `${'-'.repeat(width + 1)}:` : '-'.repeat(width + 2))).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)];
}

/** Prints the report: tables for people, or everything as JSON with `json`. */
export function printThroughputReport(result: ThroughputResult, json: boolean): void {
  const rows = summarize(result);
  const targets = checkTargets(result, rows);
  const warnings = measurementWarnings(rows);
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ ...result, summary: rows, targets, warnings }, null, 2)}\n`,
    );
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
    return;
  }
  const { options } = result;
  const processNames = Object.keys(rows[0]?.s3az.cores ?? {}).filter((name) => name !== 'client');
  const cpuCells = (summary: { cores: Record<string, number>; machineBusy: number }) => [
    (summary.cores.client ?? 0).toFixed(2),
    ...processNames.map((name) => (summary.cores[name] ?? 0).toFixed(2)),
    percent(summary.machineBusy),
  ];
  const blank = ['', ...processNames.map(() => ''), ''];
  const passRow = (label: string, pass: PassSummary) => [
    '',
    label,
    pass.seconds.toFixed(2),
    pass.mibPerSecond.toFixed(1),
    pass.bestMibPerSecond.toFixed(1),
    '',
    '',
    '',
    ...cpuCells(pass),
  ];
  const copyRows: string[][] = [];
  for (const row of rows) {
    const label = DIRECTIONS[row.direction].label;
    const { read, write } = row.limit;
    copyRows.push(
      [
        label,
        `s3az copy (${row.s3az.transfer ?? '?'})`,
        row.s3az.seconds.toFixed(2),
        row.s3az.mibPerSecond.toFixed(1),
        row.s3az.bestMibPerSecond.toFixed(1),
        row.ratioToRclone === undefined ? 'n/a' : `${row.ratioToRclone.toFixed(2)}x`,
        percent(row.fractionOfLimit),
        mb(row.s3az.maxRssBytes),
        ...cpuCells(row.s3az),
      ],
      row.rclone
        ? [
            '',
            'rclone copyto',
            row.rclone.seconds.toFixed(2),
            row.rclone.mibPerSecond.toFixed(1),
            row.rclone.bestMibPerSecond.toFixed(1),
            '1.00x',
            percent(row.rcloneFractionOfLimit ?? 0),
            mb(row.rclone.maxRssBytes),
            ...cpuCells(row.rclone),
          ]
        : ['', 'rclone copyto: not installed', '', '', '', '', '', '', ...blank],
      passRow(`read-only pass, ${read.side}`, read),
      passRow(`write-only pass, ${write.side}`, write),
      [
        '',
        'limit = min(best read, best write)',
        '',
        '',
        row.limit.mibPerSecond.toFixed(1),
        '',
        '100%',
        '',
        ...blank,
      ],
    );
  }
  const memoryRows = rows.map((row) => [
    DIRECTIONS[row.direction].label,
    mb(row.memory.smallMaxRssBytes),
    mb(row.memory.bigMaxRssBytes),
    `${row.memory.ratio.toFixed(2)}x`,
  ]);
  const startup = median(
    result.runs.flatMap((run) =>
      run.kind === 'copy' && run.selfSeconds !== undefined ? [run.seconds - run.selfSeconds] : [],
    ),
  );
  const lines = [
    `Throughput: ${formatBytes(options.size)} object, ${options.runs} run(s) of each measurement, alternating; medians.`,
    `s3az: bundled from the sources at ${result.source.commit || 'an unknown commit'}${result.source.uncommitted.length > 0 ? ` + uncommitted ${result.source.uncommitted.join(', ')}` : ''}; ${formatBytes(options.partSize)} parts, ${options.concurrency} in flight; node ${result.node}.`,
    result.rclone
      ? `${result.rclone.version}: ${result.rclone.settings.join('; ')}.`
      : 'rclone: not installed (apt-get update && apt-get install -y rclone).',
    '',
    ...table(
      [
        'direction',
        'measurement',
        'seconds',
        'MiB/s',
        'best MiB/s',
        's3az / rclone',
        'of limit',
        'peak RSS',
        'CPU cores: client',
        ...processNames,
        'machine busy',
      ],
      copyRows,
      [
        false,
        false,
        true,
        true,
        true,
        true,
        true,
        true,
        true,
        ...processNames.map(() => true),
        true,
      ],
    ),
    '',
    `Peak RSS of s3az (max over runs) by object size:`,
    '',
    ...table(
      ['direction', formatBytes(result.smallSize), formatBytes(options.size), 'ratio'],
      memoryRows,
      [false, true, true, true],
    ),
    '',
    'Targets:',
    ...targets.map(
      (target) =>
        `  ${target.met ? 'met   ' : 'MISSED'}  ${target.name}: ${target.display} (target ${target.threshold})`,
    ),
    ...warnings.map((warning) => `\nWARNING: ${warning}.`),
    '',
    'Notes:',
    `- seconds: wall time of each copy command, process start-up included (s3az: ${startup.toFixed(2)} s median between wall time and its own timer). Limit passes are timed inside their own process, without start-up. MiB/s = size / median seconds; best MiB/s = size / shortest run.`,
    '- s3az / rclone = rclone median seconds / s3az median seconds; above 1, s3az is faster.',
    `- limit = min(best read-only pass, best write-only pass), each with s3az's part size and concurrency: a copy overlaps reads and writes, so it can at best match its slower half; best rather than median because other work only ever slows a pass down. "of limit" compares medians of the copies with it. The two halves share the 2 cores, so the true ceiling is lower, down to the serial bound 1/(1/read + 1/write): ${rows.map((row) => `${DIRECTIONS[row.direction].label} ${row.limit.serialMibPerSecond.toFixed(1)} MiB/s`).join(', ')}.`,
    '- peak RSS: GNU time %M of the command (max over runs), the same for both tools.',
    '- CPU cores: CPU seconds / seconds of the measurement, per process (client = the copier, start-up included, or the limit pass process; other = the rest of the machine: other processes, kernel threads); machine busy: 100% = all cores.',
    `- every copy's size is checked; round 1 of each tool and direction also checks SHA-256 of the content.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
