// bdb-site: a replicated key-value store on Berkeley DB's Base API with repbroker as its transport.
import BerkeleyDBSite

SiteCommand.run(Array(CommandLine.arguments.dropFirst()))
