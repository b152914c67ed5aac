package queries

// ListSQL exposes the page statements to the plan test.
var ListSQL = listSQL
