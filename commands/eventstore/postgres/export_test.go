package postgres

// ReadAllSQL exposes the log query to the plan test.
const ReadAllSQL = readAllSQL
