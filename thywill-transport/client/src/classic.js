// @ts-check
// The classic script's entry point: the client as the page's one global, `Thywill`. The
// build wraps it in a guard that keeps the first client when the script is loaded twice.
import { Thywill } from './client.js';
import { global } from './util.js';

global.Thywill = Thywill;
