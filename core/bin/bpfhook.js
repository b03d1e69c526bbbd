#!/usr/bin/env node
"use strict";
// A committed, executable entry point: the compiled CLI lives in dist/,
// which exists only after `npm run build`.
require("../dist/cli/main.js");
