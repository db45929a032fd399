/** A subcommand: parses its own arguments and returns the process exit code. */
export interface Command {
  readonly summary: string;
  readonly usage: string;
  run(args: string[]): Promise<number>;
}
