// Lint for the web app (scripts/test runs it): ESLint's and typescript-eslint's recommended rules with type
// information, React's hooks rules, jsx-a11y's recommended accessibility rules and TanStack Query's rules (query
// keys that name every input). Generated code (src/gen) is the generator's business.
import js from "@eslint/js";
import pluginQuery from "@tanstack/eslint-plugin-query";
import jsxA11y from "eslint-plugin-jsx-a11y";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist", "src/gen", "e2e/out", "node_modules"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  ...pluginQuery.configs["flat/recommended"],
  { files: ["src/**/*.tsx"], ...jsxA11y.flatConfigs.recommended },
  {
    languageOptions: {
      globals: { ...globals.browser, ...globals.node },
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "react-hooks": reactHooks },
    rules: {
      ...reactHooks.configs.recommended.rules,
      // It flags effects that start a fetch whose result is set after an await: that is the intended pattern here.
      "react-hooks/set-state-in-effect": "off",
      "@typescript-eslint/no-floating-promises": ["error", { ignoreVoid: true }],
    },
  },
  { files: ["*.config.*", "e2e/**"], ...tseslint.configs.disableTypeChecked },
);
