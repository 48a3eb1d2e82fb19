// Waypoint live play: browser input -> Owl-Control key codes (Windows virtual-key codes).
// No side effects on import (ComfyUI loads every .js file of the pack as an extension module).

import { KEY_CODES } from "./keycodes.js";

// KeyboardEvent.code is the physical key, so WASD stays WASD on AZERTY / Dvorak keyboards.
const PHYSICAL_NAMES = {
  Space: "SPACE", ShiftLeft: "SHIFT", ShiftRight: "SHIFT", ControlLeft: "CTRL", ControlRight: "CTRL",
  AltLeft: "ALT", AltRight: "ALT", Tab: "TAB", Enter: "ENTER", Backspace: "BACKSPACE", CapsLock: "CAPSLOCK",
  PageUp: "PAGEUP", PageDown: "PAGEDOWN", End: "END", Home: "HOME",
  ArrowLeft: "LEFT", ArrowUp: "UP", ArrowRight: "RIGHT", ArrowDown: "DOWN",
  Semicolon: ";", Equal: "=", Comma: ",", Minus: "-", Period: ".", Slash: "/", Backquote: "`",
  BracketLeft: "[", Backslash: "\\", BracketRight: "]", Quote: "'",
};

function baseKeymap() {
  const map = {};
  for (const [physical, name] of Object.entries(PHYSICAL_NAMES)) map[physical] = KEY_CODES[name];
  for (let c = 65; c <= 90; c++) map["Key" + String.fromCharCode(c)] = KEY_CODES[String.fromCharCode(c)];
  for (let d = 0; d <= 9; d++) {
    map["Digit" + d] = KEY_CODES[String(d)];
    map["Numpad" + d] = KEY_CODES["NUMPAD" + d];
  }
  for (let f = 1; f <= 24; f++) map["F" + f] = KEY_CODES["F" + f];
  return map;
}

// Remapping presets: physical key code -> Owl-Control code, on top of the base map.
export const LAYOUTS = {
  "WASD (physical keys)": {},
  "Arrows drive WASD": { ArrowUp: KEY_CODES.W, ArrowLeft: KEY_CODES.A, ArrowDown: KEY_CODES.S, ArrowRight: KEY_CODES.D },
  "IJKL drive WASD": { KeyI: KEY_CODES.W, KeyJ: KEY_CODES.A, KeyK: KEY_CODES.S, KeyL: KEY_CODES.D },
};

// "ArrowUp=W, KeyE=Space" -> {ArrowUp: 87, KeyE: 32}; throws on a bad entry.
export function parseRemap(text) {
  const out = {};
  for (const part of (text || "").split(",")) {
    if (!part.trim()) continue;
    const [from, to] = part.split("=").map((s) => (s || "").trim());
    const upper = (to || "").toUpperCase();
    const code = /^\d+$/.test(upper) ? Number(upper) : KEY_CODES[upper] ?? NaN;
    if (!from || !Number.isInteger(code) || code < 0 || code > 255) throw new Error(`bad remap entry "${part.trim()}"`);
    out[from] = code;
  }
  return out;
}

export function buildKeymap(layoutName, remapText) {
  return { ...baseKeymap(), ...(LAYOUTS[layoutName] || {}), ...parseRemap(remapText) };
}

// MouseEvent.button -> Owl-Control code
export const MOUSE_BUTTONS = { 0: 1, 1: 4, 2: 2, 3: 5, 4: 6 };

// Standard-mapping gamepad: sticks to WASD + look, buttons to keys.
const PAD_BUTTONS = { 0: 32, 1: 16, 2: 69, 3: 82, 4: 81, 5: 70, 6: 2, 7: 1, 12: 38, 13: 40, 14: 37, 15: 39 };
const STICK_DEADZONE = 0.5;
const LOOK_DEADZONE = 0.12;

// Held codes and look motion (in "mouse pixels" this frame) from every connected gamepad.
export function readGamepads(dtSeconds) {
  const held = new Set();
  let lookX = 0, lookY = 0;
  const pads = (navigator.getGamepads && navigator.getGamepads()) || [];
  for (const pad of pads) {
    if (!pad || !pad.connected) continue;
    const [lx = 0, ly = 0, rx = 0, ry = 0] = pad.axes;
    if (ly < -STICK_DEADZONE) held.add(87);
    if (ly > STICK_DEADZONE) held.add(83);
    if (lx < -STICK_DEADZONE) held.add(65);
    if (lx > STICK_DEADZONE) held.add(68);
    // Full stick deflection ~ 600 px/s of mouse motion, scaled like the mouse by the sensitivity.
    if (Math.abs(rx) > LOOK_DEADZONE) lookX += rx * 600 * dtSeconds;
    if (Math.abs(ry) > LOOK_DEADZONE) lookY += ry * 600 * dtSeconds;
    pad.buttons.forEach((button, index) => {
      if ((button.pressed || button.value > 0.5) && PAD_BUTTONS[index] !== undefined) held.add(PAD_BUTTONS[index]);
    });
  }
  return { held, lookX, lookY };
}
