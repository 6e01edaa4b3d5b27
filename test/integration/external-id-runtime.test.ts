import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { buildRuntime } from '../../src/runtime/runtime.ts';
import { emulatorEnv, emulatorVariables } from '../support/emulators.ts';
import { readAll } from '../support/streams.ts';

/**
 * STS has no emulator here: a stand-in at the SDK boundary answers AssumeRole in the
 * service's query protocol and records each request's form body.
 */
let server: Server;
let endpoint: string;
const bodies: URLSearchParams[] = [];

const bodyOf = async (request: IncomingMessage) => (await readAll(request)).toString('utf8');

beforeAll(async () => {
  server = createServer(async (request, response) => {
    bodies.push(new URLSearchParams(await bodyOf(request)));
    response.setHeader('content-type', 'text/xml');
    response.end(
      `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>` +
        `<Credentials><AccessKeyId>${emulatorEnv().accessKeyId}</AccessKeyId>` +
        `<SecretAccessKey>${emulatorEnv().secretAccessKey}</SecretAccessKey><SessionToken>token</SessionToken>` +
        `<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>` +
        `<AssumedRoleUser><Arn>arn:aws:sts::222222222222:assumed-role/replicator/s3az</Arn>` +
        `<AssumedRoleId>AROAEXAMPLE:s3az</AssumedRoleId></AssumedRoleUser>` +
        `</AssumeRoleResult></AssumeRoleResponse>`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('Function: buildRuntime (cross-account role with an external id)', () => {
  it("passes the rule's externalId to AssumeRole when its S3 store first signs a request", async () => {
    // Prepare
    const config = configSchema.parse({
      rules: [
        {
          name: 'r',
          s3: {
            bucket: 'bucket-a',
            roleArn: 'arn:aws:iam::222222222222:role/replicator',
            externalId: 'tenant-42:replicator',
          },
          azure: { accountUrl: emulatorEnv().azureAccountUrl, container: 'container-a' },
        },
      ],
    });
    const runtime = await buildRuntime({
      env: { ...emulatorVariables(), AWS_ENDPOINT_URL_STS: endpoint },
      config,
    });
    const [rule] = config.rules;
    if (!rule) throw new Error('no rule');

    // Act: whatever the emulator answers, the request was signed with the role's credentials.
    const { s3 } = await runtime.storesOf(rule);
    await s3.head('any-key').catch(() => undefined);

    // Assess
    expect(bodies).toHaveLength(1);
    expect(bodies[0]?.get('Action')).toBe('AssumeRole');
    expect(bodies[0]?.get('ExternalId')).toBe('tenant-42:replicator');
  });
});
