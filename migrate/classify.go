package migrate

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The replication-compatibility rules. A migration runs on a colour's copy while the copy still
// receives logical replication from the live database (clone mode), or on the database the old
// colour still uses (shared mode). "Existing table" means one not created earlier in the
// pending set of migrations; every statement on a table created in the set is safe (nothing
// replicates into it, nothing old uses it).
//
//	statement                                          label     why
//	CREATE TABLE / TABLE AS / MATERIALIZED VIEW        safe      new: nothing replicates into it
//	CREATE UNLOGGED TABLE                              breaking  unlogged tables are not replicated
//	CREATE INDEX [CONCURRENTLY] (not UNIQUE)           safe      indexes do not change which rows fit
//	CREATE UNIQUE INDEX on an existing table           breaking  a duplicate arriving stops replication
//	CREATE SEQUENCE/VIEW/FUNCTION/TYPE/DOMAIN/SCHEMA/
//	  EXTENSION/TRIGGER/POLICY/STATISTICS              safe      new objects; plain triggers do not
//	                                                             fire for replicated rows
//	ALTER TABLE ADD COLUMN nullable, or with a default safe      arriving rows get NULL or the default
//	  (NOT NULL with a default too; identity, serial,
//	  generated columns too)
//	ALTER TABLE ADD COLUMN NOT NULL without default    breaking  arriving rows have no value for it
//	ALTER TABLE ADD COLUMN … PRIMARY KEY/UNIQUE        breaking  as the constraints below
//	ALTER TABLE ADD COLUMN … CHECK                     contract  as ADD CONSTRAINT CHECK … NOT VALID
//	ALTER COLUMN SET/DROP DEFAULT, DROP NOT NULL       safe      accepts every row it accepted before
//	ALTER COLUMN TYPE widening: int2→int4→int8,        safe      every arriving value still fits
//	  int→numeric, numeric(p,s)→numeric(p'≥p,s'≥s)
//	  keeping integer digits, float4→float8,
//	  varchar(n)→varchar(m≥n)/varchar/text, text→varchar
//	ALTER COLUMN TYPE narrowing within a family        contract  an arriving value may not fit
//	  (numbers, strings)
//	ALTER COLUMN TYPE to another family (int→text,     breaking  arriving values are converted by the
//	  timestamp→timestamptz …)                                   copy's type: may fail or change meaning
//	ALTER COLUMN TYPE, current type unknown            contract  cannot judge: conservative
//	ALTER COLUMN SET NOT NULL                          contract  an arriving NULL stops replication
//	ADD CONSTRAINT FOREIGN KEY … NOT VALID             safe      FKs do not fire for replicated rows
//	ADD CONSTRAINT CHECK … NOT VALID                   contract  CHECKs are enforced on replicated
//	                                                             rows, NOT VALID or not (measured)
//	ADD CONSTRAINT CHECK/FOREIGN KEY (validated)       breaking  fix: NOT VALID, VALIDATE later
//	ADD CONSTRAINT UNIQUE/PRIMARY KEY/EXCLUDE          breaking  a duplicate arriving stops replication
//	VALIDATE CONSTRAINT                                contract  after the switch
//	DROP CONSTRAINT (not the primary key)              safe      accepts more rows, not fewer
//	DROP CONSTRAINT of the primary key (known from the breaking  replication matches rows by it
//	  catalog, or named *_pkey)
//	DROP CONSTRAINT, kind unknown                      contract  cannot judge: conservative
//	REPLICA IDENTITY, SET UNLOGGED                     breaking  changes how or whether rows replicate
//	ENABLE ALWAYS/REPLICA TRIGGER or RULE              contract  would fire for replicated rows
//	ALTER TABLE storage, statistics, options, owner,   safe      no effect on which rows fit
//	  cluster, plain ENABLE/DISABLE TRIGGER, identity
//	ALTER TABLE, any other subcommand                  contract  cannot judge: conservative
//	ALTER INDEX/VIEW/SEQUENCE/TYPE (not RENAME)        safe      not replicated
//	DROP COLUMN, DROP TABLE, DROP VIEW, DROP of any    contract  the old version, or rows still
//	  other object but an index                                  arriving, use it
//	DROP INDEX                                         safe
//	RENAME TABLE/COLUMN/VIEW/SEQUENCE/…                contract  replication matches by name; the old
//	                                                             version uses the old name
//	RENAME INDEX/CONSTRAINT/TRIGGER/POLICY             safe
//	COMMENT, GRANT, REVOKE, ALTER DEFAULT PRIVILEGES,  safe
//	  SET, ALTER SEQUENCE, ALTER TYPE … ADD VALUE,
//	  REFRESH MATERIALIZED VIEW, ANALYZE, VACUUM
//	INSERT/UPDATE/DELETE/MERGE/COPY FROM into tables   safe      nothing replicates into them
//	  created earlier in the pending set
//	INSERT/UPDATE/DELETE/MERGE/COPY FROM on existing   contract  rows changed on a copy diverge from,
//	  tables, TRUNCATE                                           or collide with, rows still arriving
//	SELECT without function calls                      safe      reads only
//	SELECT calling functions, DO, CALL, anything else  contract  cannot judge: conservative
//
// A file carrying the line AfterCutoverMark is held back as a whole, whatever its statements.

// catalog is what the classifier knows of the database's schema before the pending set runs.
type catalog struct {
	tables      map[string]bool   // "schema.table"
	columns     map[string]string // "schema.table.column" → format_type
	constraints map[string]byte   // "schema.table.constraint" → pg_constraint.contype
}

// classifier labels statements in order, remembering what earlier ones created.
type classifier struct {
	cat     *catalog           // nil: the schema is unknown (Classify)
	created map[string]bool    // tables created earlier in the set
	newCols map[string]bool    // columns added earlier in the set to existing tables
	types   map[string]colType // column types set earlier in the set
	newCons map[string]bool    // constraints added earlier in the set
}

func newClassifier(cat *catalog) *classifier {
	return &classifier{
		cat:     cat,
		created: make(map[string]bool),
		newCols: make(map[string]bool),
		types:   make(map[string]colType),
		newCons: make(map[string]bool),
	}
}

// Classify splits sql into statements with the PostgreSQL parser and labels each (see the
// rules above). Tables created by earlier statements of sql count as new; every other table
// as existing, with its column types unknown. A statement that does not parse is an error
// naming it.
func Classify(sql string) ([]Statement, error) {
	return newClassifier(nil).classify(sql)
}

// verdict is a label with its reason and fix.
type verdict struct {
	label       Label
	reason, fix string
}

func safe(reason string) verdict { return verdict{Safe, reason, ""} }

func contract(reason string) verdict {
	return verdict{Contract, reason, "runs after the switch, once the old colour is gone"}
}

func breaking(reason, fix string) verdict {
	return verdict{Breaking, reason, fix + ", or mark the file " + AfterCutoverMark + " to run it after the switch"}
}

// worse returns the more severe of a and b (a when equal).
func worse(a, b verdict) verdict {
	if b.label.rank() > a.label.rank() {
		return b
	}
	return a
}

// classify splits and labels the statements of sql.
func (c *classifier) classify(sql string) ([]Statement, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, parseError(sql, err)
	}
	var out []Statement
	for _, raw := range tree.Stmts {
		text := stmtText(sql, raw)
		v := c.statement(raw.Stmt)
		out = append(out, Statement{SQL: text, Label: v.label, Reason: v.reason, Fix: v.fix})
	}
	return out, nil
}

// stmtText is the source of one parsed statement, without surrounding space or semicolon.
func stmtText(sql string, raw *pg_query.RawStmt) string {
	start := int(raw.StmtLocation)
	end := len(sql)
	if raw.StmtLen > 0 {
		end = start + int(raw.StmtLen)
	}
	if start < 0 || start > len(sql) || end > len(sql) || end < start {
		return strings.TrimSpace(sql)
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(sql[start:end]), ";"))
}

// parseError finds the statement that does not parse, to name it.
func parseError(sql string, err error) error {
	parts, serr := pg_query.SplitWithScanner(sql, false)
	if serr != nil {
		return fmt.Errorf("parse: %w", err)
	}
	offset := 0
	for i, part := range parts {
		at := strings.Index(sql[offset:], part)
		line := 1
		if at >= 0 {
			line += strings.Count(sql[:offset+at+len(part)-len(strings.TrimLeft(part, " \t\r\n"))], "\n")
			offset += at + len(part)
		}
		if _, perr := pg_query.Parse(part); perr != nil {
			return fmt.Errorf("statement %d (line %d) %q: %w", i+1, line, brief(part), perr)
		}
	}
	return fmt.Errorf("parse: %w", err)
}

// brief shortens a statement for a message: comments and extra space dropped, 100 characters.
func brief(sql string) string {
	var words []string
	for _, line := range strings.Split(sql, "\n") {
		if t := strings.TrimSpace(line); !strings.HasPrefix(t, "--") {
			words = append(words, strings.Fields(t)...)
		}
	}
	s := strings.Join(words, " ")
	if r := []rune(s); len(r) > 100 {
		s = string(r[:97]) + "..."
	}
	return s
}

// tableKey names a table as "schema.table"; unqualified names are in public.
func tableKey(rv *pg_query.RangeVar) string {
	if rv == nil {
		return ""
	}
	schema := rv.Schemaname
	if schema == "" {
		schema = "public"
	}
	return schema + "." + rv.Relname
}

// display names a table for a message, without the default schema.
func display(key string) string { return strings.TrimPrefix(key, "public.") }

// isNew reports whether table was created earlier in the pending set.
func (c *classifier) isNew(table string) bool { return c.created[table] }

// statement labels one parsed statement and records what it creates.
func (c *classifier) statement(n *pg_query.Node) verdict {
	switch s := n.GetNode().(type) {
	case *pg_query.Node_CreateStmt:
		return c.createTable(s.CreateStmt)
	case *pg_query.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.Into != nil {
			c.markCreated(tableKey(s.CreateTableAsStmt.Into.Rel), s.CreateTableAsStmt.IfNotExists)
		}
		return safe("creates a table or materialized view: nothing replicates into it")
	case *pg_query.Node_SelectStmt:
		if into := s.SelectStmt.IntoClause; into != nil {
			c.markCreated(tableKey(into.Rel), false)
			return safe("creates a table: nothing replicates into it")
		}
		return c.dml(n, "")
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
		return c.dml(n, "")
	case *pg_query.Node_CopyStmt:
		if !s.CopyStmt.IsFrom {
			return safe("reads only")
		}
		return c.dml(n, tableKey(s.CopyStmt.Relation))
	case *pg_query.Node_TruncateStmt:
		for _, r := range s.TruncateStmt.Relations {
			if t := tableKey(r.GetRangeVar()); !c.isNew(t) {
				return contract("truncates the existing table " + display(t) + ": rows still arriving would land in an emptied table")
			}
		}
		return safe("truncates tables created in this release")
	case *pg_query.Node_IndexStmt:
		return c.index(s.IndexStmt)
	case *pg_query.Node_AlterTableStmt:
		return c.alterTable(s.AlterTableStmt)
	case *pg_query.Node_RenameStmt:
		return c.rename(s.RenameStmt)
	case *pg_query.Node_DropStmt:
		return c.drop(s.DropStmt)
	case *pg_query.Node_AlterEnumStmt:
		if s.AlterEnumStmt.OldVal != "" {
			return contract("renames an enum value the old version may still write")
		}
		return safe("adds an enum value: every old value stays valid")
	case *pg_query.Node_CreateSeqStmt, *pg_query.Node_ViewStmt, *pg_query.Node_CreateFunctionStmt,
		*pg_query.Node_DefineStmt, *pg_query.Node_CompositeTypeStmt, *pg_query.Node_CreateEnumStmt,
		*pg_query.Node_CreateRangeStmt, *pg_query.Node_CreateDomainStmt, *pg_query.Node_CreateSchemaStmt,
		*pg_query.Node_CreateExtensionStmt, *pg_query.Node_CreatePolicyStmt, *pg_query.Node_CreateStatsStmt:
		return safe("creates a new object: nothing replicated depends on it")
	case *pg_query.Node_CreateTrigStmt:
		return safe("creates a trigger: plain triggers do not fire for replicated rows")
	case *pg_query.Node_CommentStmt:
		return safe("a comment")
	case *pg_query.Node_GrantStmt, *pg_query.Node_GrantRoleStmt, *pg_query.Node_AlterDefaultPrivilegesStmt,
		*pg_query.Node_AlterOwnerStmt:
		return safe("privileges only")
	case *pg_query.Node_AlterSeqStmt:
		return safe("alters a sequence: sequences are not replicated (teal copies their values at the switch)")
	case *pg_query.Node_VariableSetStmt:
		return safe("a session setting")
	case *pg_query.Node_RefreshMatViewStmt, *pg_query.Node_VacuumStmt, *pg_query.Node_ReindexStmt:
		return safe("maintenance: no rows change")
	case *pg_query.Node_DoStmt:
		return contract("a DO block: the classifier cannot see what it does")
	case *pg_query.Node_CallStmt:
		return contract("calls a procedure: the classifier cannot see what it does")
	default:
		return contract(fmt.Sprintf("the classifier cannot judge a %s statement", nodeName(n)))
	}
}

// nodeName is the parser's name of a statement's kind: "DoStmt".
func nodeName(n *pg_query.Node) string {
	m := n.ProtoReflect()
	if od := m.Descriptor().Oneofs().ByName("node"); od != nil {
		if fd := m.WhichOneof(od); fd != nil {
			return string(fd.Message().Name())
		}
	}
	return "unknown"
}

func (c *classifier) markCreated(table string, ifNotExists bool) {
	if table == "" {
		return
	}
	// CREATE … IF NOT EXISTS of a table the database already has creates nothing.
	if ifNotExists && c.cat != nil && c.cat.tables[table] {
		return
	}
	c.created[table] = true
}

func (c *classifier) createTable(s *pg_query.CreateStmt) verdict {
	t := tableKey(s.Relation)
	c.markCreated(t, s.IfNotExists)
	if s.Relation.GetRelpersistence() == "u" {
		return breaking("creates an unlogged table: unlogged tables are not replicated, and the next release's preflight blocks on them",
			"create it as a regular (logged) table")
	}
	v := safe("creates a table: nothing replicates into it")
	if s.Relation.GetRelpersistence() == "p" && !hasPrimaryKey(s) {
		v.reason += " (note: it has no primary key; the next release's preflight will block on it until it has one)"
	}
	return v
}

// hasPrimaryKey reports whether a CREATE TABLE declares a primary key, or may get one from a
// LIKE, INHERITS or PARTITION OF clause.
func hasPrimaryKey(s *pg_query.CreateStmt) bool {
	if len(s.InhRelations) > 0 || s.Partbound != nil || s.OfTypename != nil {
		return true
	}
	for _, e := range s.TableElts {
		switch x := e.GetNode().(type) {
		case *pg_query.Node_TableLikeClause:
			return true
		case *pg_query.Node_Constraint:
			if x.Constraint.Contype == pg_query.ConstrType_CONSTR_PRIMARY {
				return true
			}
		case *pg_query.Node_ColumnDef:
			for _, k := range x.ColumnDef.Constraints {
				if k.GetConstraint().GetContype() == pg_query.ConstrType_CONSTR_PRIMARY {
					return true
				}
			}
		}
	}
	for _, k := range s.Constraints {
		if k.GetConstraint().GetContype() == pg_query.ConstrType_CONSTR_PRIMARY {
			return true
		}
	}
	return false
}

func (c *classifier) index(s *pg_query.IndexStmt) verdict {
	t := tableKey(s.Relation)
	if c.isNew(t) {
		return safe("creates an index on a table created in this release")
	}
	if s.Unique || s.Primary {
		return breaking("creates a UNIQUE index on the existing table "+display(t)+": a duplicate arriving from the live side stops replication for every table",
			"create a plain index now and the unique one once nothing replicates into this database")
	}
	if s.Concurrent {
		return safe("creates an index concurrently")
	}
	return safe("creates an index: it does not change which rows fit")
}

// dml labels a statement that may write rows: every table it writes (data-modifying CTEs
// included), and, for a plain SELECT, whether it calls functions.
func (c *classifier) dml(n *pg_query.Node, target string) verdict {
	var written []string
	if target != "" {
		written = append(written, target)
	}
	calls := false
	walk(n.ProtoReflect(), func(m protoreflect.ProtoMessage) {
		switch x := m.(type) {
		case *pg_query.InsertStmt:
			written = append(written, tableKey(x.Relation))
		case *pg_query.UpdateStmt:
			written = append(written, tableKey(x.Relation))
		case *pg_query.DeleteStmt:
			written = append(written, tableKey(x.Relation))
		case *pg_query.MergeStmt:
			written = append(written, tableKey(x.Relation))
		case *pg_query.FuncCall:
			calls = true
		}
	})
	if len(written) == 0 {
		if calls {
			return contract("a SELECT that calls functions: the classifier cannot see whether they write")
		}
		return safe("reads only")
	}
	for _, t := range written {
		if !c.isNew(t) {
			return contract("changes rows of the existing table " + display(t) + ": rows changed on a copy diverge from, or collide with, rows still arriving from the live side")
		}
	}
	return safe("changes rows only of tables created in this release")
}

// walk calls visit on m and every message below it.
func walk(m protoreflect.Message, visit func(protoreflect.ProtoMessage)) {
	if !m.IsValid() {
		return
	}
	visit(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), visit)
			}
		default:
			walk(v.Message(), visit)
		}
		return true
	})
}

func (c *classifier) rename(s *pg_query.RenameStmt) verdict {
	switch s.RenameType {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_COLUMN:
		t := tableKey(s.Relation)
		if c.isNew(t) {
			if s.RenameType == pg_query.ObjectType_OBJECT_TABLE {
				c.created[tableKey(&pg_query.RangeVar{Schemaname: s.Relation.GetSchemaname(), Relname: s.Newname})] = true
			}
			return safe("renames in a table created in this release")
		}
		if s.RenameType == pg_query.ObjectType_OBJECT_COLUMN {
			return contract("renames a column of " + display(t) + ": replication matches columns by name, and the old version uses the old one")
		}
		return contract("renames the table " + display(t) + ": replication matches tables by name, and the old version uses the old one")
	case pg_query.ObjectType_OBJECT_INDEX, pg_query.ObjectType_OBJECT_TABCONSTRAINT, pg_query.ObjectType_OBJECT_TRIGGER,
		pg_query.ObjectType_OBJECT_POLICY, pg_query.ObjectType_OBJECT_DOMCONSTRAINT, pg_query.ObjectType_OBJECT_STATISTIC_EXT:
		return safe("renames an object nothing replicated refers to by name")
	default:
		return contract("renames " + objectName(s.RenameType) + " the old version may still use by its old name")
	}
}

// objectName is "a view", "a function" … for messages.
func objectName(t pg_query.ObjectType) string {
	name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(t.String(), "OBJECT_"), "_", " "))
	if strings.ContainsRune("aeiou", rune(name[0])) {
		return "an " + name
	}
	return "a " + name
}

func (c *classifier) drop(s *pg_query.DropStmt) verdict {
	switch s.RemoveType {
	case pg_query.ObjectType_OBJECT_INDEX:
		return safe("drops an index")
	case pg_query.ObjectType_OBJECT_TABLE:
		for _, o := range s.Objects {
			if t := dropName(o); !c.isNew(t) {
				return contract("drops the existing table " + display(t) + ": the old version and rows still arriving use it")
			}
		}
		return safe("drops tables created in this release")
	default:
		return contract("drops " + objectName(s.RemoveType) + " the old version may still use")
	}
}

// dropName is the "schema.table" of a DROP TABLE object (a list of names).
func dropName(o *pg_query.Node) string {
	var parts []string
	for _, item := range o.GetList().GetItems() {
		parts = append(parts, item.GetString_().GetSval())
	}
	switch len(parts) {
	case 1:
		return "public." + parts[0]
	case 0:
		return ""
	default:
		return parts[len(parts)-2] + "." + parts[len(parts)-1]
	}
}

func (c *classifier) alterTable(s *pg_query.AlterTableStmt) verdict {
	t := tableKey(s.Relation)
	if s.Objtype != pg_query.ObjectType_OBJECT_TABLE {
		return safe("alters " + objectName(s.Objtype) + ": not replicated")
	}
	if c.isNew(t) {
		return safe("alters a table created in this release")
	}
	var v verdict
	for _, n := range s.Cmds {
		cmd := n.GetAlterTableCmd()
		if cmd == nil {
			continue
		}
		v = worse(v, c.alterCmd(t, cmd))
	}
	if v.label == "" {
		return safe("alters the table")
	}
	return v
}

func (c *classifier) alterCmd(t string, cmd *pg_query.AlterTableCmd) verdict {
	col := t + "." + cmd.Name
	switch cmd.Subtype {
	case pg_query.AlterTableType_AT_AddColumn:
		return c.addColumn(t, cmd.Def.GetColumnDef())
	case pg_query.AlterTableType_AT_ColumnDefault:
		return safe("sets or drops a column default")
	case pg_query.AlterTableType_AT_DropNotNull:
		return safe("drops NOT NULL: every row it accepted still fits")
	case pg_query.AlterTableType_AT_SetNotNull:
		if c.newCols[col] {
			return contract("sets NOT NULL on " + display(col) + ": rows arriving from the live side leave it NULL unless it has a default")
		}
		return contract("sets NOT NULL on " + display(col) + ": a NULL arriving from the live side stops replication")
	case pg_query.AlterTableType_AT_AlterColumnType:
		return c.alterType(col, cmd.Def.GetColumnDef())
	case pg_query.AlterTableType_AT_DropColumn:
		if c.newCols[col] {
			return safe("drops a column added in this release")
		}
		return contract("drops the column " + display(col) + ": the old version and rows still arriving use it")
	case pg_query.AlterTableType_AT_AddConstraint:
		return c.addConstraint(t, cmd.Def.GetConstraint())
	case pg_query.AlterTableType_AT_ValidateConstraint:
		return contract("validates a constraint: a row arriving from the live side may violate it")
	case pg_query.AlterTableType_AT_DropConstraint:
		return c.dropConstraint(t, cmd.Name)
	case pg_query.AlterTableType_AT_ReplicaIdentity:
		return breaking("changes the replica identity of "+display(t)+": replication matches updated and deleted rows by it",
			"keep the replica identity")
	case pg_query.AlterTableType_AT_SetUnLogged:
		return breaking("makes "+display(t)+" unlogged: unlogged tables are not replicated",
			"keep the table logged")
	case pg_query.AlterTableType_AT_EnableAlwaysTrig, pg_query.AlterTableType_AT_EnableReplicaTrig,
		pg_query.AlterTableType_AT_EnableAlwaysRule, pg_query.AlterTableType_AT_EnableReplicaRule:
		return contract("enables a trigger or rule that fires for replicated rows")
	case pg_query.AlterTableType_AT_SetLogged, pg_query.AlterTableType_AT_SetStatistics, pg_query.AlterTableType_AT_SetOptions,
		pg_query.AlterTableType_AT_ResetOptions, pg_query.AlterTableType_AT_SetStorage, pg_query.AlterTableType_AT_SetCompression,
		pg_query.AlterTableType_AT_ChangeOwner, pg_query.AlterTableType_AT_ClusterOn, pg_query.AlterTableType_AT_DropCluster,
		pg_query.AlterTableType_AT_SetTableSpace, pg_query.AlterTableType_AT_SetRelOptions, pg_query.AlterTableType_AT_ResetRelOptions,
		pg_query.AlterTableType_AT_ReplaceRelOptions, pg_query.AlterTableType_AT_SetAccessMethod,
		pg_query.AlterTableType_AT_EnableTrig, pg_query.AlterTableType_AT_DisableTrig, pg_query.AlterTableType_AT_EnableTrigAll,
		pg_query.AlterTableType_AT_DisableTrigAll, pg_query.AlterTableType_AT_EnableTrigUser, pg_query.AlterTableType_AT_DisableTrigUser,
		pg_query.AlterTableType_AT_EnableRule, pg_query.AlterTableType_AT_DisableRule,
		pg_query.AlterTableType_AT_AddIdentity, pg_query.AlterTableType_AT_SetIdentity, pg_query.AlterTableType_AT_DropIdentity:
		return safe("changes storage, statistics, ownership, identity or plain triggers: no effect on which rows fit")
	default:
		name := strings.TrimPrefix(cmd.Subtype.String(), "AT_")
		return contract("the classifier cannot judge ALTER TABLE … " + name)
	}
}

func (c *classifier) addColumn(t string, def *pg_query.ColumnDef) verdict {
	if def == nil {
		return contract("the classifier cannot judge this ADD COLUMN")
	}
	col := t + "." + def.Colname
	c.newCols[col] = true
	c.types[col] = typeOf(def.TypeName)
	notNull, hasDefault := def.IsNotNull, def.RawDefault != nil || def.Identity != "" || def.Generated != ""
	if n := typeOf(def.TypeName).name; n == "serial" || n == "bigserial" || n == "smallserial" ||
		n == "serial4" || n == "serial8" || n == "serial2" {
		notNull, hasDefault = true, true
	}
	v := safe("adds a nullable column: rows arriving from the live side get NULL")
	var cons verdict
	for _, n := range def.Constraints {
		k := n.GetConstraint()
		switch k.GetContype() {
		case pg_query.ConstrType_CONSTR_NOTNULL:
			notNull = true
		case pg_query.ConstrType_CONSTR_DEFAULT:
			if !isNullConst(k.RawExpr) {
				hasDefault = true
			}
		case pg_query.ConstrType_CONSTR_IDENTITY, pg_query.ConstrType_CONSTR_GENERATED:
			hasDefault = true
		case pg_query.ConstrType_CONSTR_PRIMARY:
			notNull = true
			cons = worse(cons, breaking("adds a primary key column to "+display(t)+": it changes the replica identity replication matches rows by",
				"keep the primary key"))
		case pg_query.ConstrType_CONSTR_UNIQUE, pg_query.ConstrType_CONSTR_EXCLUSION:
			cons = worse(cons, breaking("adds a UNIQUE column to the existing table "+display(t)+": a duplicate arriving from the live side stops replication",
				"add the column without UNIQUE now and the unique index once nothing replicates into this database"))
		case pg_query.ConstrType_CONSTR_CHECK:
			cons = worse(cons, contract("adds a column with a CHECK: CHECK constraints are enforced on rows arriving from the live side"))
		}
	}
	switch {
	case notNull && !hasDefault:
		v = breaking("adds the NOT NULL column "+display(col)+" without a default to an existing table: rows arriving from the live side have no value for it",
			"add the column with a DEFAULT, or nullable now and SET NOT NULL in a later migration (it runs after the switch)")
	case hasDefault:
		v = safe("adds a column with a default: rows arriving from the live side get the default")
	}
	if cons.label != "" {
		v = worse(v, cons)
	}
	return v
}

// isNullConst reports whether an expression is the constant NULL.
func isNullConst(n *pg_query.Node) bool {
	if k := n.GetAConst(); k != nil {
		return k.Isnull
	}
	return false
}

func (c *classifier) addConstraint(t string, k *pg_query.Constraint) verdict {
	if k == nil {
		return contract("the classifier cannot judge this ADD CONSTRAINT")
	}
	if k.Conname != "" {
		c.newCons[t+"."+k.Conname] = true
	}
	notValid := k.SkipValidation
	switch k.Contype {
	case pg_query.ConstrType_CONSTR_FOREIGN:
		if notValid {
			return safe("adds a foreign key NOT VALID: foreign keys do not fire for replicated rows")
		}
		return breaking("adds a validated foreign key to the existing table "+display(t),
			"add it NOT VALID and VALIDATE CONSTRAINT in a later migration (it runs after the switch)")
	case pg_query.ConstrType_CONSTR_CHECK:
		if notValid {
			return contract("adds a CHECK constraint: it is enforced on rows arriving from the live side even NOT VALID, and one that violates it stops replication")
		}
		return breaking("adds a validated CHECK constraint to the existing table "+display(t)+": a row arriving from the live side that violates it stops replication",
			"add it NOT VALID (it is held back until after the switch) and VALIDATE CONSTRAINT in a later migration")
	case pg_query.ConstrType_CONSTR_PRIMARY:
		return breaking("adds a primary key to the existing table "+display(t)+": it changes the replica identity, and a duplicate arriving stops replication",
			"give the table its primary key in a release with database.mode snapshot")
	case pg_query.ConstrType_CONSTR_UNIQUE, pg_query.ConstrType_CONSTR_EXCLUSION:
		return breaking("adds a UNIQUE or EXCLUDE constraint to the existing table "+display(t)+": a duplicate arriving from the live side stops replication",
			"add a plain index now and the constraint once nothing replicates into this database")
	case pg_query.ConstrType_CONSTR_NOTNULL:
		return contract("adds NOT NULL: a NULL arriving from the live side stops replication")
	default:
		return contract("the classifier cannot judge this constraint")
	}
}

func (c *classifier) dropConstraint(t, name string) verdict {
	key := t + "." + name
	if c.newCons[key] {
		return safe("drops a constraint added in this release")
	}
	if c.cat != nil {
		switch kind, ok := c.cat.constraints[key]; {
		case ok && kind == 'p':
		case ok:
			return safe("drops a constraint: every row it accepted still fits")
		case !c.cat.tables[t]:
			return contract("drops a constraint of a table the database does not have yet: cannot judge")
		default:
			return safe("drops a constraint the table does not have (IF EXISTS)")
		}
	} else if !strings.HasSuffix(name, "_pkey") {
		return contract("drops the constraint " + name + ": without the database's schema the classifier cannot tell whether it is the primary key")
	}
	return breaking("drops the primary key of "+display(t)+": replication matches updated and deleted rows by it",
		"keep the primary key")
}

func (c *classifier) alterType(col string, def *pg_query.ColumnDef) verdict {
	if def == nil || def.TypeName == nil {
		return contract("the classifier cannot judge this ALTER COLUMN TYPE")
	}
	to := typeOf(def.TypeName)
	if c.newCols[col] {
		c.types[col] = to
		return safe("changes the type of a column added in this release")
	}
	from, ok := c.types[col]
	if !ok && c.cat != nil {
		if ft, found := c.cat.columns[col]; found {
			from, ok = parseTypeString(ft)
		}
	}
	c.types[col] = to
	if !ok {
		return contract("changes the type of " + display(col) + " to " + to.String() + ": the classifier cannot tell its current type")
	}
	switch compareTypes(from, to) {
	case sameType:
		return safe("keeps the type of " + display(col))
	case widening:
		return safe("widens " + display(col) + " from " + from.String() + " to " + to.String() + ": every value arriving from the live side still fits")
	case narrowing:
		return contract("narrows " + display(col) + " from " + from.String() + " to " + to.String() + ": a value arriving from the live side may not fit")
	default:
		return breaking("changes "+display(col)+" from "+from.String()+" to the incompatible type "+to.String()+": values arriving from the live side are converted by the copy's type",
			"add a new column of the new type, write both from the new version, and drop the old one in a later migration (expand/contract)")
	}
}
