/** The default part size: 8 MiB keeps S3 parts under local emulators' 11 MiB body limit. */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
export const DEFAULT_CONCURRENCY = 8;
/** What a copy may hold at once by default (`--memory`); the defaults above use 64 MiB of it. */
export const DEFAULT_MEMORY = '1GiB';
