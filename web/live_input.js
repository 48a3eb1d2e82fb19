// Waypoint live play: browser input -> Owl-Control key codes (Windows virtual-key codes).
// No side effects on import (ComfyUI loads every .js file of the pack as an extension module).

// KeyboardEvent.code is the physical key, so WASD stays WASD on AZERTY / Dvorak keyboards.
function baseKeymap() {
  const map = {
    Space: 32, ShiftLeft: 16, ShiftRight: 16, ControlLeft: 17, ControlRight: 17, AltLeft: 18, AltRight: 18,
    Tab: 9, Enter: 13, Backspace: 8, CapsLock: 20, PageUp: 33, PageDown: 34, End: 35, Home: 36,
    ArrowLeft: 37, ArrowUp: 38, ArrowRight: 39, ArrowDown: 40,
    Semicolon: 186, Equal: 187, Comma: 188, Minus: 189, Period: 190, Slash: 191, Backquote: 192,
    BracketLeft: 219, Backslash: 220, BracketRight: 221, Quote: 222,
  };
  for (let c = 65; c <= 90; c++) map["Key" + String.fromCharCode(c)] = c;
  for (let d = 0; d <= 9; d++) {
    map["Digit" + d] = 48 + d;
    map["Numpad" + d] = 96 + d;
  }
  for (let f = 1; f <= 24; f++) map["F" + f] = 111 + f;
  return map;
}

// Remapping presets: physical key code -> Owl-Control code, on top of the base map.
export const LAYOUTS = {
  "WASD (physical keys)": {},
  "Arrows drive WASD": { ArrowUp: 87, ArrowLeft: 65, ArrowDown: 83, ArrowRight: 68 },
  "IJKL drive WASD": { KeyI: 87, KeyJ: 65, KeyK: 83, KeyL: 68 },
};

const KEY_NAMES = { W: 87, A: 65, S: 83, D: 68, SPACE: 32, SHIFT: 16, CTRL: 17, ALT: 18, LMB: 1, RMB: 2, MMB: 4 };

// "ArrowUp=W, KeyE=Space" -> {ArrowUp: 87, KeyE: 32}; throws on a bad entry.
export function parseRemap(text) {
  const out = {};
  for (const part of (text || "").split(",")) {
    if (!part.trim()) continue;
    const [from, to] = part.split("=").map((s) => (s || "").trim());
    const upper = (to || "").toUpperCase();
    const code = /^\d+$/.test(upper) ? Number(upper) : KEY_NAMES[upper] ?? (upper.length === 1 ? upper.charCodeAt(0) : NaN);
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
