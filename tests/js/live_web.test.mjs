// Unit tests of the live-play widget's pure modules (run by tests/test_web.py with node's test runner).
import assert from "node:assert/strict";
import { test } from "node:test";

import { LAYOUTS, MOUSE_BUTTONS, buildKeymap, parseRemap, readGamepads } from "../../web/live_input.js";
import { Rate, Window, unpackFrame } from "../../web/live_socket.js";

test("base keymap uses physical keys and Owl-Control codes", () => {
  const map = buildKeymap(Object.keys(LAYOUTS)[0], "");
  assert.equal(map.KeyW, 87);
  assert.equal(map.KeyA, 65);
  assert.equal(map.Space, 32);
  assert.equal(map.ShiftLeft, 16);
  assert.equal(map.ArrowUp, 38);
  assert.equal(map.Digit0, 48);
  assert.equal(map.F1, 112);
  assert.equal(MOUSE_BUTTONS[0], 1);
  assert.equal(MOUSE_BUTTONS[2], 2);
});

test("layouts and remaps override the base map", () => {
  const arrows = buildKeymap("Arrows drive WASD", "");
  assert.equal(arrows.ArrowUp, 87);
  assert.equal(arrows.ArrowLeft, 65);
  const custom = buildKeymap("WASD (physical keys)", "KeyE=Space, KeyQ = shift, Digit1=LMB, KeyZ=70");
  assert.deepEqual([custom.KeyE, custom.KeyQ, custom.Digit1, custom.KeyZ], [32, 16, 1, 70]);
  assert.deepEqual(parseRemap(""), {});
  assert.throws(() => parseRemap("KeyE=Jump"), /bad remap entry/);
  assert.throws(() => parseRemap("KeyE=300"), /bad remap entry/);
  assert.throws(() => parseRemap("=W"), /bad remap entry/);
});

test("gamepad sticks and buttons map to keys and look motion", () => {
  const pad = { connected: true, axes: [0.9, -0.8, 0.5, 0], buttons: Array.from({ length: 16 }, (_, i) => ({ pressed: i === 0 || i === 7, value: 0 })) };
  globalThis.navigator = { getGamepads: () => [pad, null] };
  try {
    const { held, lookX, lookY } = readGamepads(0.1);
    assert.deepEqual([...held].sort((a, b) => a - b), [1, 32, 68, 87]);
    assert.equal(lookX, 30);
    assert.equal(lookY, 0);
  } finally {
    delete globalThis.navigator;
  }
});

test("frame packets unpack to header and image", () => {
  const header = new TextEncoder().encode(JSON.stringify({ type: "frame", ordinal: 7 }));
  const buffer = new ArrayBuffer(4 + header.length + 3);
  new DataView(buffer).setUint32(0, header.length, false);
  new Uint8Array(buffer, 4).set(header);
  new Uint8Array(buffer, 4 + header.length).set([1, 2, 3]);
  const { header: parsed, image } = unpackFrame(buffer);
  assert.deepEqual(parsed, { type: "frame", ordinal: 7 });
  assert.deepEqual([...image], [1, 2, 3]);
});

test("rolling percentile and rate", () => {
  const window = new Window(3);
  assert.equal(window.percentile(0.5), null);
  [10, 1, 5, 100].forEach((v) => window.push(v));
  assert.equal(window.percentile(0.5), 5);
  assert.equal(window.percentile(1), 100);
  const rate = new Rate();
  [0, 500, 1000, 1500].forEach((t) => rate.tick(t));
  assert.equal(rate.perSecond(1600), 2);
  assert.equal(rate.perSecond(3400), 0.5);
});
