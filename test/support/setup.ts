import { afterEach } from 'vitest';
import { cleanUpAfterTest } from './helpers.js';

// A setup file runs for every test file, also where test files share their modules (isolate: false):
// a hook registered when helpers.ts is first imported would belong to the first file only.
afterEach(cleanUpAfterTest);
