// A small SQL/DDL highlighter (tokens as text nodes in spans) and a Markdown renderer that escapes HTML first.
import { el } from "./util.js";

const KEYWORDS = new Set(("select from where and or not in is null as on join left right inner outer full cross " +
  "group by order having limit offset union all distinct case when then else end create table primary key " +
  "foreign references default unique check constraint comment exists between like ilike with asc desc insert " +
  "into values update set delete alter drop index view schema true false over partition filter cast interval")
  .split(" "));
const TYPES = new Set(("integer int bigint smallint serial bigserial numeric decimal real double precision " +
  "varchar char character text boolean bool date time timestamp timestamptz uuid json jsonb bytea varying zone")
  .split(" "));
const TOKEN = /(--[^\n]*|\/\*[\s\S]*?\*\/)|('(?:[^']|'')*'?)|("(?:[^"]|"")*"?)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_$]*)/g;

/** The SQL text as a fragment of spans (class kw, ty, str, id-q, num-lit, cm); the text itself is untouched. */
export function highlightSql(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    if (match.index > last) out.append(text.slice(last, match.index));
    const [token, comment, str, quoted, number, word] = match;
    let cls = null;
    if (comment) cls = "cm";
    else if (str) cls = "str";
    else if (quoted) cls = "id-q";
    else if (number) cls = "num-lit";
    else if (word && KEYWORDS.has(word.toLowerCase())) cls = "kw";
    else if (word && TYPES.has(word.toLowerCase())) cls = "ty";
    out.append(cls ? el("span", { class: cls }, token) : token);
    last = match.index + token.length;
  }
  if (last < text.length) out.append(text.slice(last));
  return out;
}

export function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

// Runs on escaped text only and adds fixed tags: no character of the input can open a tag or an attribute.
function inline(escaped) {
  return escaped.replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
}

function tableRow(line, cell) {
  const cells = line.trim().replace(/^\||\|$/g, "").split("|");
  return `<tr>${cells.map((c) => `<${cell}>${inline(c.trim())}</${cell}>`).join("")}</tr>`;
}

/** Markdown (headings, lists, tables, code fences, `code`, **bold**) as HTML, the source escaped first. */
export function renderMarkdown(source) {
  const lines = escapeHtml(source).split("\n");
  const html = [];
  let list = null;
  let para = [];
  const flush = () => {
    if (para.length) html.push(`<p>${inline(para.join("<br>"))}</p>`);
    para = [];
    if (list) html.push(`</${list}>`);
    list = null;
  };
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    if (line.startsWith("```")) {
      flush();
      const code = [];
      for (i += 1; i < lines.length && !lines[i].startsWith("```"); i += 1) code.push(lines[i]);
      html.push(`<pre class="code">${code.join("\n")}</pre>`);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const bullet = /^\s*[-*]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d+\.\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      html.push(`<h${heading[1].length}>${inline(heading[2])}</h${heading[1].length}>`);
    } else if (bullet || numbered) {
      const kind = bullet ? "ul" : "ol";
      if (para.length || list !== kind) flush();
      if (!list) { html.push(`<${kind}>`); list = kind; }
      html.push(`<li>${inline((bullet || numbered)[1])}</li>`);
    } else if (line.trim().startsWith("|")) {
      flush();
      const rows = [];
      for (; i < lines.length && lines[i].trim().startsWith("|"); i += 1) rows.push(lines[i]);
      i -= 1;
      const body = rows.filter((r) => !/^\s*\|[\s:|-]+\|\s*$/.test(r));
      html.push(`<table>${body.map((r, n) => tableRow(r, n === 0 ? "th" : "td")).join("")}</table>`);
    } else if (!line.trim()) {
      flush();
    } else {
      if (list) flush();
      para.push(line);
    }
  }
  flush();
  return html.join("\n");
}

/** A rendered Markdown block. */
export function markdownNode(source) {
  const node = el("div", { class: "md" });
  node.innerHTML = renderMarkdown(source); // safe: renderMarkdown escapes the source before adding its tags
  return node;
}
