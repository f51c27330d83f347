-- The orders the sample shop takes: every POST /orders inserts one, with the version of the
-- app that served it.

-- +goose Up
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    note       text,
    version    text,
    created_at timestamptz DEFAULT now()
);

-- +goose Down
DROP TABLE orders;
