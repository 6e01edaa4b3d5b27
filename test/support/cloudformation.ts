import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readAll } from './streams.ts';

/**
 * CloudFormation has no emulator here: a stand-in at the SDK boundary that answers
 * DescribeStacks in the service's query protocol (form in, XML out), as the SDK calls it, from
 * `stacks` (stack name to its outputs). Every request is recorded as `<Action> <StackName>`.
 */
export async function startCloudFormationStandIn(stacks: Map<string, Record<string, string>>) {
  const asked: string[] = [];
  const server = createServer(async (request, response) => {
    const form = new URLSearchParams((await readAll(request)).toString('utf8'));
    const name = form.get('StackName') ?? '';
    asked.push(`${form.get('Action')} ${name}`);
    response.setHeader('content-type', 'text/xml');
    const outputs = stacks.get(name);
    if (!outputs) {
      response.statusCode = 400;
      response.end(
        `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id ${name} does not exist</Message></Error><RequestId>1</RequestId></ErrorResponse>`,
      );
      return;
    }
    const members = Object.entries(outputs)
      .map(
        ([key, value]) =>
          `<member><OutputKey>${key}</OutputKey><OutputValue>${value}</OutputValue></member>`,
      )
      .join('');
    response.end(
      `<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member><StackName>${name}</StackName><StackId>arn:aws:cloudformation:eu-west-1:111122223333:stack/${name}/1</StackId><StackStatus>UPDATE_COMPLETE</StackStatus><CreationTime>2026-11-01T00:00:00Z</CreationTime><Outputs>${members}</Outputs></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></DescribeStacksResponse>`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    asked,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
