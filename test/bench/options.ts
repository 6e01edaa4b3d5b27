/** How a benchmark mode reads the value of the option at hand. */
export interface OptionValues {
  /** The option's value: the next argument, which must not be another option. */
  value(): string;
  /** `text` as a whole number of at least `min`, or an error naming the option. */
  whole(text: string, min: number): number;
}

/**
 * Walks `args` (`--name [value]` …) in order and calls `each` with every option's name and the
 * means to read its value; `each` throws for an option it does not know.
 */
export function readOptions(
  args: readonly string[],
  each: (name: string, values: OptionValues) => void,
): void {
  for (let index = 0; index < args.length; index++) {
    const name = args[index] ?? '';
    each(name, {
      value() {
        const text = args[++index];
        if (text === undefined || text.startsWith('--')) throw new Error(`${name} needs a value`);
        return text;
      },
      whole(text, min) {
        const number = Number(text);
        if (!Number.isInteger(number) || number < min)
          throw new Error(`${name} must be a whole number >= ${min}, got "${text}"`);
        return number;
      },
    });
  }
}
