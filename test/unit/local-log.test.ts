import { describe, expect, it } from 'vitest';
import { textOf } from '../../src/cli/local-command.ts';
import type { CopyTask } from '../../src/core/route.ts';

const task: CopyTask = {
  rule: 'local',
  kind: 'created',
  sourceSide: 'azure',
  sourceContainer: 'replicated',
  sourceKey: 'plan.txt',
  destinationContainer: 'replicated',
  destinationKey: 'plan.txt',
  eventTime: '2026-11-29T08:41:01.000Z',
  correlationId: 'c1',
};

const skipped = (reason: 'conflict' | 'diverged' | 'replica' | 'up-to-date') =>
  textOf({
    task,
    result: 'done',
    latencyMs: 5,
    outcome: { action: 'skipped', reason, detail: `why ${reason}`, decisions: 1 },
  });

describe('Function: textOf (the s3az local log)', () => {
  it.each(['conflict', 'diverged'] as const)(
    'shows a %s skip, which leaves the sides different, as kept',
    (reason) => {
      expect(skipped(reason)).toMatch(
        new RegExp(
          `kept {4}s3://replicated/plan\\.txt, which differs from az://replicated/plan\\.txt \\(${reason}: why ${reason}\\)$`,
        ),
      );
    },
  );

  it.each(['replica', 'up-to-date'] as const)('says nothing of a %s skip', (reason) => {
    expect(skipped(reason)).toBeUndefined();
  });
});
