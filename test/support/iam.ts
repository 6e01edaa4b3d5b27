/*
 * A small IAM evaluator, enough for the statements generated here: Allow/Deny, Action and
 * Resource with `*` and `?` wildcards, and the condition operators the generator uses (with
 * `IfExists` and the `ForAnyValue:`/`ForAllValues:` qualifiers). Any other operator throws, so
 * a new condition is never waved through. CloudFormation's pseudo parameters are given the
 * values of a stack in account 111122223333, eu-west-1; `Fn::GetAtt` of a resource is the ARN
 * of a queue of that name there (the only resources the statements name by GetAtt).
 */
export type Statement = Record<string, unknown>;
export type RequestContext = {
  action: string;
  resource: string;
  keys?: Record<string, string | string[]>;
};

export const stack: Record<string, string> = {
  'AWS::AccountId': '111122223333',
  'AWS::Region': 'eu-west-1',
  'AWS::Partition': 'aws',
};

export function resolve(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(resolve);
  if (typeof value !== 'object' || value === null) return value;
  const object = value as Record<string, unknown>;
  if (typeof object.Ref === 'string') {
    const pseudo = stack[object.Ref];
    if (pseudo === undefined) throw new Error(`unknown Ref ${object.Ref}`);
    return pseudo;
  }
  if (Array.isArray(object['Fn::Join'])) {
    const [separator, parts] = object['Fn::Join'] as [string, unknown[]];
    return (resolve(parts) as string[]).join(separator);
  }
  if (Array.isArray(object['Fn::GetAtt'])) {
    const [name] = object['Fn::GetAtt'] as [string];
    return `arn:aws:sqs:eu-west-1:111122223333:${name}`;
  }
  return Object.fromEntries(Object.entries(object).map(([key, entry]) => [key, resolve(entry)]));
}

function list(value: unknown): string[] {
  return (Array.isArray(value) ? value : [value]).map(String);
}

function like(pattern: string, value: string): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`).test(value);
}

function conditionHolds(condition: unknown, keys: Record<string, string | string[]>): boolean {
  if (condition === undefined) return true;
  return Object.entries(condition as Record<string, Record<string, unknown>>).every(
    ([operator, entries]) => {
      const numeric =
        /^Numeric(LessThanEquals|LessThan|GreaterThanEquals|GreaterThan|Equals)$/.exec(operator);
      if (numeric) {
        return Object.entries(entries).every(([key, expected]) => {
          const actual = Number(keys[key]);
          const limit = Number(expected);
          if (keys[key] === undefined || Number.isNaN(actual)) return false;
          return {
            LessThanEquals: actual <= limit,
            LessThan: actual < limit,
            GreaterThanEquals: actual >= limit,
            GreaterThan: actual > limit,
            Equals: actual === limit,
          }[numeric[1] as 'Equals'];
        });
      }
      const match =
        /^(?:(ForAnyValue|ForAllValues):)?(StringEquals|StringLike|ArnLike|ArnEquals)(IfExists)?$/.exec(
          operator,
        );
      if (!match) throw new Error(`the test evaluator does not know ${operator}`);
      const [, qualifier, base, ifExists] = match;
      const compare = (expected: string, actual: string) =>
        base === 'StringEquals' || base === 'ArnEquals'
          ? expected === actual
          : like(expected, actual);
      return Object.entries(entries).every(([key, expected]) => {
        const actual = keys[key];
        if (actual === undefined) return ifExists !== undefined || qualifier === 'ForAllValues';
        const values = list(actual);
        const matches = (value: string) => list(expected).some((item) => compare(item, value));
        if (qualifier === 'ForAllValues') return values.every(matches);
        if (qualifier === 'ForAnyValue') return values.some(matches);
        if (values.length !== 1) throw new Error(`${key} is multivalued: it needs a set operator`);
        return matches(values[0] as string);
      });
    },
  );
}

function applies(statement: Statement, request: RequestContext): boolean {
  return (
    list(statement.Action).some((action) => like(action, request.action)) &&
    list(statement.Resource).some((resource) => like(resource, request.resource)) &&
    conditionHolds(statement.Condition, request.keys ?? {})
  );
}

/** Whether the statements allow the request: some Allow applies and no Deny does. */
export function allows(statements: Statement[], request: RequestContext): boolean {
  const resolved = resolve(statements) as Statement[];
  const applying = resolved.filter((statement) => applies(statement, request));
  return (
    applying.some((statement) => statement.Effect === 'Allow') &&
    !applying.some((statement) => statement.Effect === 'Deny')
  );
}
