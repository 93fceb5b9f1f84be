/**
 * The model select: the automatic choice first, then the available models grouped by provider, then the
 * unavailable ones out of the way in a disabled group at the end (a provider without a key or not running).
 */
import type { Model } from "../gen/devpynode/ai/v1/ai_pb";
import { DEFAULT_MODEL, useModels } from "./models";

interface Props {
  value: string;
  onChange: (model: string) => void;
  disabled?: boolean;
  id?: string;
}

/** The `default` alias picks the first available provider's model: "Automatic" says so without a second "default". */
function describe(model: Model): string {
  if (model.id === DEFAULT_MODEL) return "Automatic";
  return model.id;
}

export function ModelPicker({ value, onChange, disabled, id }: Props) {
  const models = useModels();
  const automatic = models.filter((m) => m.id === DEFAULT_MODEL);
  const rest = models.filter((m) => m.id !== DEFAULT_MODEL);
  const available = rest.filter((m) => m.available);
  const unavailable = rest.filter((m) => !m.available);
  const providers = [...new Set(available.map((m) => m.provider))];
  const known = models.some((m) => m.id === value);
  return (
    <label className="model-picker">
      Model
      <select id={id} value={value} disabled={disabled} onChange={(e) => onChange(e.target.value)}>
        {!known && <option value={value}>{value === DEFAULT_MODEL ? describe({ id: value } as Model) : value}</option>}
        {automatic.map((m) => (
          <option key={m.id} value={m.id}>
            {describe(m)}
          </option>
        ))}
        {providers.map((provider) => (
          <optgroup key={provider} label={provider === "alias" ? "Aliases" : provider}>
            {available
              .filter((m) => m.provider === provider)
              .map((m) => (
                <option key={m.id} value={m.id}>
                  {describe(m)}
                </option>
              ))}
          </optgroup>
        ))}
        {unavailable.length > 0 && (
          <optgroup label="Unavailable">
            {unavailable.map((m) => (
              <option key={m.id} value={m.id} disabled>
                {m.id}
              </option>
            ))}
          </optgroup>
        )}
      </select>
    </label>
  );
}
