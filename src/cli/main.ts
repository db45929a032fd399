import { BridgeError } from '../errors.ts';
import type { Command } from './command.ts';

const COMMANDS: Readonly<Record<string, () => Promise<{ command: Command }>>> = {
  net: () => import('./net.ts'),
  upscale: () => import('./upscale.ts'),
  interpose: () => import('./interpose.ts'),
  models: () => import('./models.ts'),
  serve: () => import('./serve.ts'),
  'install-extension': () => import('./install-extension.ts'),
};

async function printHelp(): Promise<void> {
  const lines = ['usage: latent-bridge <command> [options]', '', 'commands:'];
  for (const [name, load] of Object.entries(COMMANDS)) {
    const { command } = await load();
    lines.push(`  ${name.padEnd(18)}${command.summary}`);
  }
  lines.push('', 'Run `latent-bridge <command> --help` for the options of one command.');
  console.log(lines.join('\n'));
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    await printHelp();
    return name === undefined ? 2 : 0;
  }
  const load = COMMANDS[name];
  if (load === undefined) {
    console.error(`latent-bridge: unknown command "${name}"; run \`latent-bridge --help\` for the list`);
    return 2;
  }
  const { command } = await load();
  if (args.includes('--help') || args.includes('-h')) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(args);
  } catch (error) {
    if (error instanceof BridgeError) {
      console.error(`latent-bridge ${name}: ${error.message} [${error.code}]`);
      return 1;
    }
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
      console.error(`latent-bridge ${name}: ${error.message}\n\n${command.usage}`);
      return 2;
    }
    throw error;
  }
}
