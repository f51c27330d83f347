module teal.dev/teal

go 1.26.8
