/**
 * Markdown for messages. react-markdown builds React elements and never injects HTML: raw HTML in a message
 * (from a model or a member) is turned into plain text before rendering, and only http(s)/mailto links survive. A long answer is split
 * into blocks at blank lines outside code fences; each finished block is memoised, so a new token re-parses
 * only the last block, never the whole answer.
 */
import { memo, type ComponentProps } from "react";
import Markdown, { defaultUrlTransform, type ExtraProps } from "react-markdown";

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

const Block = memo(function Block({ source }: { source: string }) {
  return (
    <Markdown remarkPlugins={[htmlAsText]} urlTransform={safeUrl} components={{ a: LinkOut }}>
      {source}
    </Markdown>
  );
});

export function MarkdownText({ text }: { text: string }) {
  const blocks = splitBlocks(text);
  return (
    <div className="markdown">
      {blocks.map((block, index) => (
        <Block key={index} source={block} />
      ))}
    </div>
  );
}
