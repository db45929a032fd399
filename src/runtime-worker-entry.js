// The runtime thread's entry point: worker threads do not inherit the main thread's TypeScript
// loader, so this plain module registers tsx before importing the thread's code.
import { register } from 'tsx/esm/api';

register();
await import('./runtime-worker.ts');
