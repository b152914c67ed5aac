-- +goose Up
-- Read model of the directory projection: who is in which group of a
-- tenant's directory. Org and merchant scopes are resolved from it.
CREATE TABLE directory_members (
    tenant   text NOT NULL,
    kind     text NOT NULL,
    group_id text NOT NULL,
    user_id  text NOT NULL,
    -- Position of the MemberJoined that made the user a member.
    position text NOT NULL,
    PRIMARY KEY (tenant, kind, group_id, user_id)
);

-- +goose Down
DROP TABLE directory_members;
