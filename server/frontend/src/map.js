// The dispatcher's map of engineers (/desk/engineers): Leaflet, with map tiles from the configured URL
// (FLOWDESK_MAP_TILE_URL) or, offline by default, the region's outline shipped as GeoJSON in
// static/geo/ (drawn before the circles, so beneath them). One circle per engineer at the last reported position (faded: the home base, no recent
// position), coloured by status with the same colours as the page's legend.
import { circleMarker, featureGroup, geoJSON, map as leafletMap, tileLayer } from "leaflet/dist/leaflet-src.esm.js";

// Drawn in the file's order: sea first, then the region's land, lakes and rivers on top.
const OUTLINE_STYLES = {
  sea: { stroke: false, fillColor: "#cfe0f0", fillOpacity: 1 },
  land: { color: "#7d8799", weight: 1.2, fillColor: "#fbfaf5", fillOpacity: 1 },
  island: { color: "#7d8799", weight: 1.2, fillColor: "#fbfaf5", fillOpacity: 1 },
  water: { color: "#6fa8dc", weight: 1, fillColor: "#cfe0f0", fillOpacity: 1 },
  river: { color: "#6fa8dc", weight: 3, opacity: 0.9 },
};

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

async function drawOutline(map, url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) return null;
  const outline = geoJSON(await response.json(), {
    style: (feature) => OUTLINE_STYLES[feature.properties.kind] || OUTLINE_STYLES.land,
    interactive: false,
    className: "fd-outline",
  });
  outline.addTo(map);
  return outline;
}

// Leaflet puts a string tooltip in as HTML; an engineer's name is data, so it goes in as text.
function textNode(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span;
}

function drawMarkers(map, spec) {
  const group = featureGroup();
  for (const point of spec.markers) {
    const colour = spec.colours[point.status] || "#1f6feb";
    circleMarker([point.lat, point.lon], {
      radius: point.live ? 7 : 5,
      color: "#ffffff",
      weight: 1.5,
      fillColor: colour,
      fillOpacity: point.live ? 0.95 : 0.45,
      className: `fd-marker fd-marker-${point.status}${point.live ? "" : " fd-marker-home"}`,
    }).bindTooltip(textNode(point.title)).addTo(group);
  }
  group.addTo(map);
  return group;
}

async function mount(container) {
  const spec = readJson(container.dataset.map);
  const map = leafletMap(container, { zoomSnap: 0.25, attributionControl: Boolean(spec.tiles) });
  map.setView([0, 0], 2);
  let outline = null;
  if (spec.tiles) {
    tileLayer(spec.tiles.url, { attribution: spec.tiles.attribution, maxZoom: 19 }).addTo(map);
  } else {
    container.classList.add("fd-map-offline");
    outline = await drawOutline(map, spec.outline);
  }
  const markers = drawMarkers(map, spec);
  // The engineers in view; with none, the whole region.
  const focus = spec.markers.length ? markers : outline;
  if (focus) map.fitBounds(focus.getBounds().pad(0.15));
  container.dataset.rendered = "true";
}

document.querySelectorAll("[data-map]").forEach(mount);
