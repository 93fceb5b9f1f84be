/** Conversation titles as plain text: a title given by a model's first answer may carry Markdown. */
export function plainTitle(title: string): string {
  const plain = title
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, "$1") // images: their alt text
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1") // links: their text
    .replace(/^\s{0,3}(#{1,6}|>|[-*+]|\d+[.)])\s+/gm, "") // headings, quotes, list markers
    .replace(/(\*\*|__|~~|`+)/g, "") // bold, strike, code
    .replace(/\*([^*\s][^*]*?)\*/g, "$1") // *italics*, wherever they are
    .replace(/(^|[\s(])_([^_\s][^_]*?)_(?=[\s).,!?:;]|$)/g, "$1$2") // _italics_, not snake_case
    .replace(/\s+/g, " ")
    .trim();
  return plain || "Untitled";
}
