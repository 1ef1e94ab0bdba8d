// What a BI tool (Metabase, DBeaver) does over JDBC against `kiban pg`: connect, read the catalog through
// DatabaseMetaData, run prepared statements with typed parameters (past the driver's server-prepare threshold),
// and read masked data. Prints one line per finding; tests/test_pgwire_jdbc.py checks them.
// Usage: java -cp postgresql.jar:. BiProbe URL USER PASSWORD
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class BiProbe {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        props.setProperty("ApplicationName", "bi-probe");
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product " + meta.getDatabaseProductName() + " " + meta.getDatabaseMajorVersion());
            System.out.println("readonly " + conn.isReadOnly());
            conn.setReadOnly(true);
            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            System.out.println("schemas " + String.join(",", schemas));
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "mart", "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME")
                                             + ":" + rs.getString("TABLE_TYPE"));
            }
            System.out.println("tables " + String.join(",", tables));
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "mart", "daily_sales", "%")) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME")
                                              + ":" + rs.getInt("DATA_TYPE"));
            }
            System.out.println("columns " + String.join(",", columns));
            try (ResultSet rs = meta.getPrimaryKeys(null, "mart", "daily_sales")) {
                int n = 0;
                while (rs.next()) n++;
                System.out.println("primarykeys " + n);
            }
            try (ResultSet rs = meta.getTypeInfo()) {
                int n = 0;
                while (rs.next()) n++;
                System.out.println("typeinfo " + (n > 0));
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("select current_schema()")) {
                rs.next();
                System.out.println("current_schema " + rs.getString(1));
            }
            // a prepared statement with typed parameters, run past prepareThreshold (5): server-side prepared,
            // binary transfer of numbers and dates
            String sql = "select order_date, revenue, orders from mart.daily_sales "
                         + "where order_date >= ? and revenue > ? and orders >= ? order by order_date limit ?";
            try (PreparedStatement ps = conn.prepareStatement(sql)) {
                for (int round = 0; round < 7; round++) {
                    ps.setDate(1, Date.valueOf("2026-11-10"));
                    ps.setBigDecimal(2, new BigDecimal("0.5"));
                    ps.setLong(3, 1L);
                    ps.setInt(4, 3);
                    try (ResultSet rs = ps.executeQuery()) {
                        ResultSetMetaData md = rs.getMetaData();
                        List<String> rows = new ArrayList<>();
                        while (rs.next()) rows.add(rs.getDate(1) + "/" + (rs.getDouble(2) > 0) + "/" + rs.getLong(3));
                        if (round == 0 || round == 6) {
                            System.out.println("prepared" + round + " " + md.getColumnTypeName(1) + ","
                                               + md.getColumnTypeName(2) + "," + md.getColumnTypeName(3) + " "
                                               + String.join(";", rows));
                        }
                    }
                }
            }
            try (PreparedStatement ps = conn.prepareStatement(
                    "select email from warehouse.customers where id = ?")) {
                ps.setInt(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("masked " + rs.getString(1));
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("select count(*) from warehouse.orders where email <> ? and amount > ?")) {
                ps.setString(1, "nobody");
                ps.setDouble(2, 1.5);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("count " + (rs.getLong(1) > 0));
                }
            }
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.executeUpdate("delete from mart.daily_sales");
                System.out.println("write accepted");
            } catch (SQLException e) {
                System.out.println("write refused " + e.getSQLState());
            }
            conn.rollback();
            conn.setAutoCommit(true);
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("select 1 as one")) {
                rs.next();
                System.out.println("after " + rs.getInt(1));
            }
        }
    }
}
