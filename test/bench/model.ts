import type { CpuUsage } from './cpu.ts';
import type { Side } from './stores.ts';

/** Types shared by the throughput benchmark and its report. */

/** Options of `npm run bench -- throughput`. */
export interface ThroughputOptions {
  /** Size of the main object, bytes (one size per measurement; see `sizes`). */
  size: number;
  /** Sizes to measure one after the other (`--size 256MiB,512MiB`). */
  sizes: number[];
  /** Repetitions of each measurement. */
  runs: number;
  /** s3az's part size and the limit passes', bytes. */
  partSize: number;
  /** s3az's ranges in flight and the limit passes'. */
  concurrency: number;
  /** Where CPU profiles go (`--profile`); absent: none are taken. */
  profile?: string;
  json: boolean;
}

/** Copy direction. */
export type Direction = 's3-to-azure' | 'azure-to-s3';
/** Copier under test. */
export type Tool = 's3az' | 'rclone';

/** Source and destination side of each direction. */
export const DIRECTIONS: Record<Direction, { source: Side; destination: Side; label: string }> = {
  's3-to-azure': { source: 's3', destination: 'azure', label: 'S3 -> Azure' },
  'azure-to-s3': { source: 'azure', destination: 's3', label: 'Azure -> S3' },
};

/** One copy by one tool, as measured. */
export interface CopyRun {
  kind: 'copy';
  tool: Tool;
  direction: Direction;
  round: number;
  /** `main`: the object of `--size`; `small`: the peak-memory reference. */
  object: 'main' | 'small';
  size: number;
  /** Wall time of the command, process start-up included. */
  seconds: number;
  mibPerSecond: number;
  /** s3az only: the duration it reports itself (without process start-up). */
  selfSeconds?: number;
  /** s3az only: `pull` or `stream`. */
  transfer?: string;
  maxRssBytes: number;
  /** User + system CPU of the copier process. */
  cpuSeconds: number;
  /** CPU of the emulator processes and the machine during the copy. */
  cpu: CpuUsage;
  verified: 'size' | 'size+sha256';
  /** Anything the tool wrote to stderr (rclone's retries, for one). */
  stderr?: string;
}

/** One read-only or write-only pass of the emulators' limit. */
export interface LimitRun {
  kind: 'limit';
  pass: 'read' | 'write';
  side: Side;
  direction: Direction;
  round: number;
  size: number;
  /** Timed inside the pass process, from its first request to its last response. */
  seconds: number;
  /** Wall time of the pass process, start-up included. */
  wallSeconds: number;
  mibPerSecond: number;
  /** CPU of the pass process over `seconds`. */
  cpuSeconds: number;
  /** CPU of the emulators and the machine over `seconds`. */
  cpu: CpuUsage;
}

/** Everything measured in one benchmark run. */
export interface ThroughputResult {
  options: ThroughputOptions;
  /** Size of the memory-reference object. */
  smallSize: number;
  rclone: { version: string; settings: string[] } | undefined;
  source: { commit: string; uncommitted: string[] };
  node: string;
  runs: Array<CopyRun | LimitRun>;
}
