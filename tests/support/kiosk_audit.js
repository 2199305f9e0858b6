// The kiosk page's in-page audit (tests/test_browser.py runs it at every screenshot): a list of
// problems, empty when the screen is fine.  Nothing overflows its box, its parent or the screen;
// touch targets are at least 64 px (elder mode 96 px); every text meets WCAG contrast AA 4.5:1
// (elder mode AAA 7:1) for every size — relative luminance and contrast ratio computed from the
// computed colours, alpha composed over the backgrounds below; every English fragment is marked
// lang="en" (program names lang="zxx"); the visible panels span the screen; the base font is
// large enough.
const elder = document.documentElement.classList.contains("elder");
const W = window.innerWidth, H = window.innerHeight, TARGET = elder ? 96 : 64, GOAL = elder ? 7 : 4.5;
const problems = [];
const name = (el) => el.id ? "#" + el.id : el.tagName.toLowerCase() + (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") + (el.textContent ? " «" + el.textContent.trim().slice(0, 30) + "»" : "");
const shown = (el) => {
  if (el.closest("[hidden]")) return false;
  const cs = getComputedStyle(el), r = el.getBoundingClientRect();
  return cs.display !== "none" && cs.visibility !== "hidden" && r.width > 0 && r.height > 0;
};
const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0, 0, 0, 0]; const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
const over = (top, below) => [0, 1, 2].map((i) => top[i] * top[3] + below[i] * (1 - top[3])).concat([1]);
const background = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor); if (c[3] > 0) layers.push(c); if (c[3] >= 1) break; }
  let colour = [255, 255, 255, 1];
  for (const layer of layers.reverse()) colour = over(layer, colour);
  return colour;
};
const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
if (document.documentElement.scrollHeight > H + 1 || document.documentElement.scrollWidth > W + 1) problems.push(`the page scrolls: ${document.documentElement.scrollWidth}×${document.documentElement.scrollHeight} in ${W}×${H}`);
for (const el of document.body.querySelectorAll("*")) {
  if (["SCRIPT", "STYLE"].includes(el.tagName) || (el.closest("svg") && el.tagName.toLowerCase() !== "svg") || !shown(el)) continue;
  const cs = getComputedStyle(el), r = el.getBoundingClientRect();
  if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) problems.push(`overflows its box sideways (${el.scrollWidth} > ${el.clientWidth}): ${name(el)}`);
  if (el.clientHeight > 0 && el.scrollHeight > el.clientHeight + 1 && cs.display !== "inline") problems.push(`overflows its box downwards (${el.scrollHeight} > ${el.clientHeight}): ${name(el)}`);
  if (r.left < -1 || r.top < -1 || r.right > W + 1 || r.bottom > H + 1) problems.push(`off the screen: ${name(el)} at ${Math.round(r.left)},${Math.round(r.top)}–${Math.round(r.right)},${Math.round(r.bottom)}`);
  const parent = el.parentElement;
  // (a rotating spinner's box grows with the rotation: its layout box is what must fit)
  if (parent && parent !== document.body && cs.position !== "fixed" && cs.transform === "none" && cs.display !== "inline" && getComputedStyle(parent).display !== "inline") {
    const p = parent.getBoundingClientRect();
    if (r.left < p.left - 1 || r.right > p.right + 1 || r.top < p.top - 1 || r.bottom > p.bottom + 1) problems.push(`sticks out of its parent: ${name(el)}`);
  }
  if (el.matches("button, a, input, select, [role=button]") && (r.width < TARGET - 0.5 || r.height < TARGET - 0.5)) problems.push(`touch target ${Math.round(r.width)}×${Math.round(r.height)} < ${TARGET} px: ${name(el)}`);
  const own = Array.from(el.childNodes).filter((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own.length) continue;
  let opacity = 1;
  for (let e = el; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
  if (opacity < 1) problems.push(`text under opacity ${opacity}: ${name(el)}`);
  const fg = parse(cs.color), bg = background(el), contrast = ratio(over(fg, bg), bg);
  if (contrast < GOAL) problems.push(`contrast ${contrast.toFixed(2)} < ${GOAL}: ${name(el)} (${cs.color} on rgb(${bg.slice(0, 3).map(Math.round)}))`);
  for (const node of own) {
    if (/[A-Za-z]{2,}/.test(node.textContent)) {
      const lang = (el.closest("[lang]") || document.documentElement).getAttribute("lang");
      if (!/^(en|zxx)/.test(lang)) problems.push(`English without lang="en": ${name(el)} (lang ${lang})`);
    }
  }
}
// The whole screen used: the visible panels span most of it.
let top = H, bottom = 0, left = W, right = 0;
for (const el of document.querySelectorAll("main .panel, main button, .overlay .panel")) {
  if (!shown(el)) continue;
  const r = el.getBoundingClientRect();
  top = Math.min(top, r.top); bottom = Math.max(bottom, r.bottom); left = Math.min(left, r.left); right = Math.max(right, r.right);
}
if (bottom - top < 0.6 * H || right - left < 0.8 * W) problems.push(`the content uses ${Math.round(right - left)}×${Math.round(bottom - top)} of ${W}×${H}`);
const rootFont = parseFloat(getComputedStyle(document.documentElement).fontSize);
if (rootFont < (elder ? 28 : 18)) problems.push(`base font ${rootFont} px`);
return problems;
