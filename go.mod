module github.com/cmc-dev/cmc

go 1.26

require (
	github.com/klauspost/compress v1.20.4
	github.com/ollama/ollama v0.17.4
	github.com/urfave/cli/v2 v2.27.7
	golang.org/x/image v0.22.0
	golang.org/x/sys v0.37.0
)

require (
	github.com/cpuguy83/go-md2man/v2 v2.0.7 // indirect
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
	github.com/xrash/smetrics v0.0.0-20240521201337-686a1a2994c1 // indirect
)
