/**
 * Code highlighting for messages (its own chunk, see markdown.tsx): rehype-highlight with the common languages
 * only, to keep it small, and no guessing: a fence names its language or stays plain.
 */
import rehypeHighlight from "rehype-highlight";
import type { PluggableList } from "./markdown";
import bash from "highlight.js/lib/languages/bash";
import c from "highlight.js/lib/languages/c";
import cpp from "highlight.js/lib/languages/cpp";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import protobuf from "highlight.js/lib/languages/protobuf";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import shell from "highlight.js/lib/languages/shell";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";

const LANGUAGES = { bash, c, cpp, css, diff, go, java, javascript, json, protobuf, python, rust, shell, sql, typescript, xml, yaml };

export const HIGHLIGHT: PluggableList = [[rehypeHighlight, { languages: LANGUAGES, detect: false }]];
