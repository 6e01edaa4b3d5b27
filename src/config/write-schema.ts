import { writeFileSync } from 'node:fs';
import * as z from 'zod';
import { configSchema } from './schema.ts';

// `npm run schema`: writes the configuration's JSON Schema beside this file, for editors
// (YAML: `# yaml-language-server: $schema=./node_modules/.../replication.schema.json`).
const schema = z.toJSONSchema(configSchema, { io: 'input' });
writeFileSync(
  new URL('./replication.schema.json', import.meta.url),
  `${JSON.stringify({ title: 's3-azure-replicator configuration', ...schema }, null, 2)}\n`,
);
