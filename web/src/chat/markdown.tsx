/**
 * Markdown for messages. react-markdown builds React elements and never injects HTML: raw HTML in a message
 * (from a model or a member) is turned into plain text before rendering, and only http(s)/mailto links survive. A long answer is split
 * into blocks at blank lines outside code fences; each finished block is memoised, so a new token re-parses
 * only the last block, never the whole answer. Fenced code is highlighted (highlight.js through rehype-highlight,
 * with the few languages in highlight.ts, only when the fence names one) and has a copy button. The highlighter
 * is its own chunk, loaded the first time a message has a code fence.
 */
import { memo, useEffect, useSyncExternalStore, type ComponentProps } from "react";
import Markdown, { defaultUrlTransform, type ExtraProps, type Options } from "react-markdown";
import { CopyButton } from "./CopyButton";

export function splitBlocks(text: string): string[] {
  const blocks: string[] = [];
  let current: string[] = [];
  let fence = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fence = !fence;
    if (!fence && line.trim() === "" && current.length > 0) {
      blocks.push(current.join("\n"));
      current = [];
      continue;
    }
    current.push(line);
  }
  if (current.length > 0) blocks.push(current.join("\n"));
  return blocks;
}

interface MarkdownNode {
  type: string;
  children?: MarkdownNode[];
}

/** A remark plugin: raw HTML nodes become text nodes, so `<img onerror=…>` shows as those characters. */
function htmlAsText() {
  const walk = (node: MarkdownNode) => {
    if (node.type === "html") node.type = "text";
    node.children?.forEach(walk);
  };
  return (tree: MarkdownNode) => walk(tree);
}

function safeUrl(url: string): string {
  const safe = defaultUrlTransform(url);
  return /^(https?:|mailto:|#|\/)/i.test(safe) ? safe : "";
}

/** A link in a message opens elsewhere and passes nothing of this page on. */
function LinkOut({ children, href, title }: ComponentProps<"a"> & ExtraProps) {
  return (
    <a href={href} title={title} rel="noopener noreferrer nofollow" target="_blank">
      {children}
    </a>
  );
}

interface HastNode {
  type: string;
  value?: string;
  tagName?: string;
  properties?: { className?: unknown };
  children?: HastNode[];
}

function textOf(node: HastNode | undefined): string {
  if (!node) return "";
  if (node.type === "text") return node.value ?? "";
  return (node.children ?? []).map(textOf).join("");
}

/** A fenced block: its language, a copy button, and the (highlighted) code. */
function CodeBlock({ children, node }: ComponentProps<"pre"> & ExtraProps) {
  const code = (node as HastNode | undefined)?.children?.find((c) => c.tagName === "code");
  const classes = code?.properties?.className;
  const language = Array.isArray(classes) ? String(classes.find((c) => String(c).startsWith("language-")) ?? "").slice(9) : "";
  return (
    <div className="code-block">
      <div className="code-block-head">
        <span>{language || "text"}</span>
        <CopyButton text={textOf(code).replace(/\n$/, "")} label="Copy code" />
      </div>
      <pre>{children}</pre>
    </div>
  );
}

export type PluggableList = NonNullable<Options["rehypePlugins"]>;

const NO_PLUGINS: PluggableList = [];
let highlighter = NO_PLUGINS;
let loading: Promise<void> | null = null;
const waiting = new Set<() => void>();

function loadHighlighter(): void {
  loading ??= import("./highlight").then(
    (module) => {
      highlighter = module.HIGHLIGHT;
      waiting.forEach((wake) => wake());
    },
    () => {
      loading = null; // a failed chunk load (a new deployment): code stays plain, and the next fence tries again
    },
  );
}

function subscribe(wake: () => void) {
  waiting.add(wake);
  return () => waiting.delete(wake);
}

/** The rehype plugins for a text: the highlighter once loaded, asked for when the text has a code fence. */
function useHighlighter(text: string): PluggableList {
  const fenced = /^\s*(```|~~~)/m.test(text);
  useEffect(() => {
    if (fenced) loadHighlighter();
  }, [fenced]);
  return useSyncExternalStore(subscribe, () => highlighter);
}

const Block = memo(function Block({ source, plugins }: { source: string; plugins: PluggableList }) {
  return (
    <Markdown remarkPlugins={[htmlAsText]} rehypePlugins={plugins} urlTransform={safeUrl} components={{ a: LinkOut, pre: CodeBlock }}>
      {source}
    </Markdown>
  );
});

export function MarkdownText({ text }: { text: string }) {
  const blocks = splitBlocks(text);
  const plugins = useHighlighter(text);
  return (
    <div className="markdown">
      {blocks.map((block, index) => (
        <Block key={index} source={block} plugins={plugins} />
      ))}
    </div>
  );
}
