// Notes from the server shown where the user looks: a "waypoint.note" event ({node, text, level}),
// sent by Load Waypoint when it runs the offline toy world instead of the named model, becomes a text
// line on that node (kept until the next note for it) and, on frontends that have toasts, a toast.
// Public frontend API only: app.registerExtension, api.addEventListener, node.addDOMWidget.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const STYLE = `.wp-note { font: 11px sans-serif; color: #fc6; white-space: normal; overflow-wrap: anywhere;
  padding: 2px 4px; max-height: 120px; overflow: auto; }`;

// For tests and curious users: the last note per node id.
window.__waypointNotes = window.__waypointNotes || {};

function noteElement(node) {
  if (node.waypointNote) return node.waypointNote;
  if (!document.getElementById("wp-note-style")) {
    document.head.append(Object.assign(document.createElement("style"), { id: "wp-note-style", textContent: STYLE }));
  }
  const element = Object.assign(document.createElement("div"), { className: "wp-note" });
  node.addDOMWidget("waypoint_note", "waypoint_note", element, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => 48,
    getHeight: () => 64,
  });
  node.waypointNote = element;
  node.setSize([Math.max(node.size[0], 320), node.computeSize()[1]]);
  return element;
}

function showNote({ node: nodeId, text, level }) {
  window.__waypointNotes[String(nodeId)] = text;
  const node = nodeId == null ? null : app.graph.getNodeById(Number(nodeId)) ?? app.graph.getNodeById(nodeId);
  if (node) {
    noteElement(node).textContent = text ? `⚠ ${text}` : "";
    app.graph.setDirtyCanvas(true, true);
  }
  const toast = app.extensionManager?.toast;
  if (text && toast?.add) toast.add({ severity: level === "warn" ? "warn" : "info", summary: "Waypoint", detail: text, life: 15000 });
}

app.registerExtension({
  name: "waypoint.Notes",
  setup() {
    api.addEventListener("waypoint.note", (event) => showNote(event.detail));
  },
});
