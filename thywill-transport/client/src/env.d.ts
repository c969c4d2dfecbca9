// Set by the build (esbuild's `define`): true in the classic script, false in the package.
declare const THYWILL_CLASSIC: boolean;
