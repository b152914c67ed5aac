-- +goose Up
-- A push reaches clients as its sender wrote it: jsonb would reorder the
-- members of its data and respace it, json keeps the text.
ALTER TABLE ws_pushes ALTER COLUMN push TYPE json USING push::json;

-- +goose Down
ALTER TABLE ws_pushes ALTER COLUMN push TYPE jsonb USING push::jsonb;
