// Safe Markdown for replies: a small subset (paragraphs, line breaks, **bold**,
// *italic*, `code`, fenced code blocks, lists, headings, links) rendered by
// building DOM nodes. No text is ever parsed as HTML (no innerHTML), and a link
// gets an href only when it is http(s): `<img onerror>` stays text and
// `[x](javascript:...)` stays the literal text it was.

const FENCE = /^\s*```\s*([\w+-]*)\s*$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
const HEADING = /^\s*#{1,6}\s+(.*?)\s*#*\s*$/;
// One inline token: code, bold, italic, or a link.
const INLINE =
  /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|(?<![\p{L}\p{N}_])__(?=\S)([\s\S]*?\S)__(?![\p{L}\p{N}_])|\*(?=[^\s*])([\s\S]*?[^\s*])\*|(?<![\p{L}\p{N}_])_(?=[^\s_])([\s\S]*?[^\s_])_(?![\p{L}\p{N}_])|\[([^\]\n]+)\]\(\s*([^()\s]+)\s*\)/gu;

/** A link target that is safe to follow: an absolute http(s) URL. */
export function safeHref(target) {
  let url;
  try {
    url = new URL(target);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

function inline(text, parent, depth = 0) {
  if (depth > 8) {
    parent.append(document.createTextNode(text));
    return;
  }
  let last = 0;
  INLINE.lastIndex = 0;
  const matches = [...text.matchAll(INLINE)];
  for (const match of matches) {
    if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
    last = match.index + match[0].length;
    const [whole, , code, bold1, bold2, italic1, italic2, label, target] = match;
    if (code !== undefined) {
      const node = document.createElement("code");
      node.textContent = code.length > 2 && code.startsWith(" ") && code.endsWith(" ") ? code.slice(1, -1) : code;
      parent.append(node);
    } else if (bold1 !== undefined || bold2 !== undefined) {
      const node = document.createElement("strong");
      inline(bold1 ?? bold2, node, depth + 1);
      parent.append(node);
    } else if (italic1 !== undefined || italic2 !== undefined) {
      const node = document.createElement("em");
      inline(italic1 ?? italic2, node, depth + 1);
      parent.append(node);
    } else if (label !== undefined) {
      const href = safeHref(target);
      if (href === null) {
        parent.append(document.createTextNode(whole));
      } else {
        const link = document.createElement("a");
        link.href = href;
        link.rel = "noopener noreferrer nofollow";
        link.target = "_blank";
        inline(label, link, depth + 1);
        parent.append(link);
      }
    }
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

function paragraph(lines) {
  const p = document.createElement("p");
  lines.forEach((line, index) => {
    if (index) p.append(document.createElement("br"));
    inline(line, p);
  });
  return p;
}

/** The reply ``text`` as a DocumentFragment of safe nodes. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let prose = [];
  let list = null;
  const flushProse = () => {
    if (prose.length) fragment.append(paragraph(prose));
    prose = [];
  };
  const flushList = () => {
    if (list) fragment.append(list);
    list = null;
  };
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      flushProse();
      flushList();
      const body = [];
      i += 1;
      while (i < lines.length && !FENCE.test(lines[i])) {
        body.push(lines[i]);
        i += 1;
      }
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      if (fence[1]) code.dataset.language = fence[1];
      code.textContent = body.join("\n");
      pre.append(code);
      fragment.append(pre);
      continue;
    }
    if (!line.trim()) {
      flushProse();
      flushList();
      continue;
    }
    const bullet = BULLET.exec(line);
    const numbered = bullet ? null : NUMBERED.exec(line);
    if (bullet || numbered) {
      flushProse();
      const tag = bullet ? "UL" : "OL";
      if (!list || list.tagName !== tag) {
        flushList();
        list = document.createElement(tag.toLowerCase());
        if (numbered && numbered[1] !== "1") list.start = Number(numbered[1]);
      }
      const item = document.createElement("li");
      inline(bullet ? bullet[1] : numbered[2], item);
      list.append(item);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      flushProse();
      flushList();
      const p = document.createElement("p");
      p.className = "md-heading";
      const strong = document.createElement("strong");
      inline(heading[1], strong);
      p.append(strong);
      fragment.append(p);
      continue;
    }
    flushList();
    prose.push(line);
  }
  flushProse();
  flushList();
  return fragment;
}
